"""ONNX models whose weights live in a separate file (``model.onnx.data``, as torch's dynamo
exporter writes them): the source digest covers it, and a missing one is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from edgekit_testing import assert_one_clear_error, run_edgekit

from edgekit.converters.source_registry import open_source


def _save(folder: Path, weights: np.ndarray) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)  # fmt: skip
    return path


def test_changing_only_the_data_file_changes_the_source_digest(tmp_path):
    rng = np.random.default_rng(0)
    one = _save(tmp_path / "a", rng.standard_normal((64, 10)).astype(np.float32))
    two = _save(tmp_path / "b", rng.standard_normal((64, 10)).astype(np.float32))
    assert one.read_bytes() == two.read_bytes()  # the .onnx files are the same bytes
    assert (one.parent / "model.onnx.data").read_bytes() != (
        two.parent / "model.onnx.data"
    ).read_bytes()
    first = open_source(one, work_dir=tmp_path / "w1")
    second = open_source(two, work_dir=tmp_path / "w2")
    assert first.sha256 != second.sha256


def test_a_missing_data_file_is_named(tmp_path):
    path = _save(tmp_path / "m", np.ones((64, 10), np.float32))
    (path.parent / "model.onnx.data").unlink()
    np.savez(tmp_path / "calibration.npz", x=np.ones((4, 64), np.float32))
    result = run_edgekit("build", path, "--profile", "x86-64", "--out", tmp_path / "out",
                         "--calibration", tmp_path / "calibration.npz")  # fmt: skip
    assert_one_clear_error(result, "model.onnx.data", "missing")
    assert "truncated" not in result.stderr
