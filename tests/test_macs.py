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
