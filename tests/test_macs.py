"""MACs read from artifacts: recurrent ops are counted, ops that hide their cost are named."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.converters.onnx_inspect import inspect_onnx


def _recurrent_onnx(op: str, *, steps: int, features: int, hidden: int, layout: int) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    rng = np.random.default_rng(0)
    w = rng.standard_normal((1, gates * hidden, features)).astype(np.float32)
    r = rng.standard_normal((1, gates * hidden, hidden)).astype(np.float32)
    x_shape = [steps, 1, features] if layout == 0 else [1, steps, features]
    outputs = ["y", "y_h"] if op != "LSTM" else ["y", "y_h", "y_c"]
    node = helper.make_node(op, ["x", "w", "r"], outputs, hidden_size=hidden, layout=layout)
    head = helper.make_node("Gemm", ["h2", "fc"], ["logits"], transB=1)
    squeeze = helper.make_node("Reshape", ["y_h", "shape"], ["h2"])
    fc = rng.standard_normal((5, hidden)).astype(np.float32)
    graph = helper.make_graph(
        [node, squeeze, head],
        "recurrent",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])],
        initializer=[
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(r, "r"),
            numpy_helper.from_array(fc, "fc"),
            numpy_helper.from_array(np.array([1, hidden], np.int64), "shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.mark.parametrize(("op", "layout"), [("LSTM", 0), ("GRU", 0), ("RNN", 0)])
def test_recurrent_ops_count_every_gate_every_step(op, layout):
    steps, features, hidden = 12, 8, 16
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    stats = inspect_onnx(
        _recurrent_onnx(op, steps=steps, features=features, hidden=hidden, layout=layout)
    )
    by_op = {o.op: o.macs for o in stats.ops}
    # Hand count: per step, each gate multiplies the input (features) and the state (hidden).
    assert by_op[op] == steps * gates * hidden * (features + hidden)
    assert by_op["Gemm"] == hidden * 5
    assert stats.uncounted_ops == ()


def test_a_loop_is_named_as_uncounted():
    from onnx import TensorProto, helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["v_in", "v_in"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1, 4])],
    )  # fmt: skip
    trips = helper.make_tensor("trips", TensorProto.INT64, [], [3])
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)],
        "looped",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[trips, cond],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    stats = inspect_onnx(model.SerializeToString())
    assert stats.uncounted_ops == ("Loop",)


def test_a_vit_counts_the_same_macs_from_both_torch_exporters(tmp_path):
    """The dynamo and the TorchScript exports of one small ViT, with a dynamic batch axis,
    count the hand-counted MACs (TorchScript computes attention's reshapes at run time)."""
    torch = pytest.importorskip("torch")

    class ViT(torch.nn.Module):
        def __init__(self, dim: int = 32, heads: int = 4, patch: int = 4) -> None:
            super().__init__()
            self.embed = torch.nn.Conv2d(1, dim, patch, patch)
            self.pos = torch.nn.Parameter(torch.zeros(1, (28 // patch) ** 2, dim))
            self.encoder = torch.nn.TransformerEncoderLayer(
                dim, heads, dim * 2, batch_first=True, dropout=0.0, activation="gelu"
            )
            self.head = torch.nn.Linear(dim, 10)

        def forward(self, x):
            tokens = self.embed(x).flatten(2).transpose(1, 2) + self.pos
            return self.head(self.encoder(tokens).mean(1))

    model = ViT().eval()
    dynamo, script = tmp_path / "dynamo.onnx", tmp_path / "script.onnx"
    batch = torch.export.Dim("batch")
    torch.onnx.export(model, (torch.zeros(2, 1, 28, 28),), str(dynamo), dynamo=True,
                      external_data=False, dynamic_shapes=({0: batch},))  # fmt: skip
    torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(script), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})  # fmt: skip
    tokens, dim = 49, 32
    hand = (
        tokens * dim * 16  # patch embedding: 4x4 patches, one channel
        + tokens * dim * 3 * dim  # q, k, v projections
        + 2 * tokens * tokens * dim  # q k^T and attention x v, over all heads
        + tokens * dim * dim  # output projection
        + 2 * tokens * dim * 2 * dim  # feed-forward, up and down
        + dim * 10  # classifier head
    )
    assert inspect_onnx(dynamo.read_bytes()).macs == hand
    assert inspect_onnx(script.read_bytes()).macs == hand
