"""The ONNX op table reports what ONNX Runtime runs, checked against ORT's own profiler."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgekit.converters.onnx_inspect import inspect_onnx
from edgekit.converters.onnx_runtime_graph import INTEGER_KERNELS


def _mobilenet_v3_block_onnx(folder: Path) -> Path:
    """Depthwise, hardswish and squeeze-excite blocks, exported from Keras to ONNX."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), batch_size=1)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="hard_silu")(inputs)
    for channels in (16, 24):
        y = keras.layers.DepthwiseConv2D(3, padding="same", activation="hard_silu")(x)
        se = keras.layers.GlobalAveragePooling2D(keepdims=True)(y)
        se = keras.layers.Conv2D(8, 1, activation="relu")(se)
        se = keras.layers.Conv2D(y.shape[-1], 1, activation="hard_sigmoid")(se)
        y = keras.layers.Multiply()([y, se])
        x = keras.layers.Conv2D(channels, 1, activation="hard_silu")(y)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10)(x)
    model = keras.Model(inputs, outputs)
    model(np.zeros((1, 32, 32, 3), np.float32))
    path = folder / "mnv3.onnx"
    model.export(str(path), format="onnx", verbose=False)
    return path


def _qdq(model: Path, folder: Path) -> bytes:
    """ORT's recommended path: pre-processing, then quantize_static, QDQ S8S8 per-channel."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre, out = folder / "pre.onnx", folder / "qdq.onnx"
    quant_pre_process(str(model), str(pre))
    name = onnx.load(str(pre)).graph.input[0].name
    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._left = [{name: rng.random((1, 32, 32, 3), np.float32)} for _ in range(16)]

        def get_next(self):
            return self._left.pop() if self._left else None

    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)  # fmt: skip
    return out.read_bytes()


def _profiled_kernels(content: bytes, folder: Path) -> dict[str, str]:
    """Node name -> kernel op, as ORT's profiler saw them run (one inference)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / "profile")
    options.log_severity_level = 3
    session = ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.zeros((1, 32, 32, 3), np.float32)}
    session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    return {
        e["name"].removesuffix("_kernel_time"): e["args"]["op_name"]
        for e in events
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
    }


@pytest.fixture(scope="module")
def qdq_model(tmp_path_factory) -> tuple[bytes, Path]:
    folder = tmp_path_factory.mktemp("op-table")
    return _qdq(_mobilenet_v3_block_onnx(folder), folder), folder


def test_int8_rows_are_exactly_the_integer_kernels_ort_runs(qdq_model):
    content, folder = qdq_model
    stats = inspect_onnx(content)
    ran = _profiled_kernels(content, folder)
    integer_kernels = {name for name, op in ran.items() if op in INTEGER_KERNELS}
    reported = {
        op.node for op in stats.ops if op.precision == "int8" and op.runs_as in INTEGER_KERNELS
    }
    assert reported == integer_kernels
    # Every Conv the table calls float between Q/DQ runs as a float Conv kernel, and vice versa.
    float_convs = {name for name, op in ran.items() if op == "Conv"}
    assert {op.node for op in stats.ops if op.op == "Conv" and op.precision == "float-qdq"} == (
        float_convs
    )


def test_the_model_has_ops_that_qdq_marks_but_ort_runs_in_float(qdq_model):
    """What makes the test above worth having: reading Q/DQ placement alone would call every
    convolution int8, while ORT runs some of them as float kernels between Q/DQ pairs."""
    content, _ = qdq_model
    stats = inspect_onnx(content)
    convs = Counter(op.precision for op in stats.ops if op.op == "Conv")
    assert convs["float-qdq"] > 0, convs
    assert "Conv" in stats.qdq_float_ops
    assert stats.float_macs > 0
    rows = {(r.op, r.precision) for r in stats.table()}
    assert ("Conv", "float-qdq") in rows
