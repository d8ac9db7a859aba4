"""Reading a ``.tflite`` artifact itself: ops and their precision, MACs, parameters, memory.

Everything here comes from the flatbuffer (LiteRT's generated schema), not from the Keras model, so
the figures describe what the board will actually run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.converters.model_stats import ModelStats, OpInfo, WeightInfo
from edgekit.errors import ConversionError
from edgekit.vocab import OpPrecision

_WEIGHTED_OPS = frozenset(
    {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D", "BATCH_MATMUL"}
)
# Recurrent ops apply each of their weight matrices once per time step.
_RECURRENT_OPS = frozenset(
    {"UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "LSTM",
     "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "RNN", "SVDF"}
)  # fmt: skip
# Ops that run other subgraphs (a GRU converted as a WHILE loop) or custom code: MACs unknown.
_UNCOUNTED_OPS = frozenset({"WHILE", "IF", "CALL_ONCE", "CALL"})
_CONVERSION_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
_DTYPES = {
    "FLOAT32": "float32",
    "FLOAT16": "float16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}


def inspect_tflite(content: bytes) -> ModelStats:
    """Op table, MACs (batch 1), parameter count and a memory estimate of a ``.tflite`` model."""
    schema = require("ai_edge_litert.schema_py_generated", extra="build", package="ai-edge-litert")
    try:
        model = schema.Model.GetRootAs(content, 0)
        graph = model.Subgraphs(0)
    except Exception as exc:  # flatbuffers raises struct/index errors on garbage
        raise ConversionError(f"not a readable .tflite flatbuffer: {exc}") from exc
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}

    tensors = [graph.Tensors(i) for i in range(graph.TensorsLength())]
    shapes = [tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else () for t in tensors]
    dtypes = [_DTYPES.get(type_names.get(t.Type(), ""), "other") for t in tensors]
    constant = [_has_data(model.Buffers(t.Buffer())) for t in tensors]

    ops: list[OpInfo] = []
    weight_tensors: set[int] = set()
    dequantized_from: dict[int, int] = {}  # output of a weight DEQUANTIZE -> its constant input
    kernels: list[WeightInfo] = []
    arena = 0
    for i in range(graph.OperatorsLength()):
        operator = graph.Operators(i)
        code = model.OperatorCodes(operator.OpcodeIndex())
        name = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        if name == "CUSTOM" and code.CustomCode():
            name = f"CUSTOM:{code.CustomCode().decode(errors='replace')}"
        inputs = [int(t) for t in operator.InputsAsNumpy()] if operator.InputsLength() else []
        outputs = [int(t) for t in operator.OutputsAsNumpy()] if operator.OutputsLength() else []
        inputs = [t for t in inputs if t >= 0]  # -1 marks an omitted optional input
        if name == "DEQUANTIZE" and inputs and constant[inputs[0]]:
            dequantized_from[outputs[0]] = inputs[0]
        if name in _WEIGHTED_OPS:
            weight_tensors.update(dequantized_from.get(t, t) for t in inputs[1:])
            # The kernel is input 1 of every weighted op (TRANSPOSE_CONV included).
            kernel = inputs[1] if len(inputs) > 1 else None
            if kernel is not None:
                kernel = dequantized_from.get(kernel, kernel)
                if constant[kernel]:
                    data = _tensor_data(
                        content, model.Buffers(tensors[kernel].Buffer()), dtypes[kernel]
                    )
                    kernels.append(
                        WeightInfo(
                            op=name,
                            tensor=tensors[kernel].Name().decode(errors="replace"),
                            size=int(data.size),
                            zeros=int(np.count_nonzero(data == 0)),
                        )
                    )
        macs = _macs(name, inputs, outputs, shapes)
        if name in _RECURRENT_OPS:
            macs = _recurrent_macs(inputs, shapes, constant)
        ops.append(
            OpInfo(
                op=name,
                precision=_precision(name, [dtypes[t] for t in outputs]),
                macs=macs,
                depthwise=name == "DEPTHWISE_CONV_2D",
            )
        )
        live = [t for t in inputs + outputs if not constant[t]]
        arena = max(arena, sum(_nbytes(shapes[t], dtypes[t]) for t in live))
    params = sum(int(np.prod(shapes[t])) for t in weight_tensors if constant[t])
    uncounted = sorted(
        {op.op for op in ops if op.op in _UNCOUNTED_OPS or op.op.startswith("CUSTOM")}
    )
    return ModelStats(
        ops=tuple(ops),
        params=params,
        arena_bytes=arena,
        weights=tuple(kernels),
        uncounted_ops=tuple(uncounted),
    )


def _tensor_data(content: bytes, buffer: Any, dtype: str) -> np.ndarray:
    if dtype == "other":
        return np.zeros(0, dtype=np.uint8)
    if buffer.DataLength():
        raw = buffer.DataAsNumpy().tobytes()
    else:  # models over 2 GB keep tensor data after the flatbuffer, addressed by offset
        raw = content[buffer.Offset() : buffer.Offset() + buffer.Size()]
    return np.frombuffer(raw, dtype=np.dtype(dtype))


def _has_data(buffer: Any) -> bool:
    # Large models keep data outside the flatbuffer (offset/size) instead of inline bytes.
    return bool(buffer.DataLength() or buffer.Size())


def _precision(op: str, output_dtypes: list[str]) -> OpPrecision:
    if op in _CONVERSION_OPS:
        return OpPrecision.CONVERT
    first = output_dtypes[0] if output_dtypes else "other"
    if first in ("int8", "uint8"):
        return OpPrecision.INT8
    if first == "int16":
        return OpPrecision.INT16
    if first in ("float32", "float16"):
        return OpPrecision.FLOAT
    return OpPrecision.INDEX


def _macs(op: str, inputs: list[int], outputs: list[int], shapes: list[tuple[int, ...]]) -> int:
    if op not in _WEIGHTED_OPS or len(inputs) < 2 or not outputs:
        return 0
    out = shapes[outputs[0]]
    weights = shapes[inputs[1]]
    if not out or not weights:
        return 0
    if op == "CONV_2D":  # weights: (out_ch, kh, kw, in_ch)
        return int(np.prod(out)) * int(np.prod(weights[1:]))
    if op == "DEPTHWISE_CONV_2D":  # weights: (1, kh, kw, out_ch)
        return int(np.prod(out)) * weights[1] * weights[2]
    if op == "FULLY_CONNECTED":  # weights: (units, in_features)
        return int(np.prod(out)) * weights[-1]
    if op == "TRANSPOSE_CONV":  # inputs: output_shape, weights (out_ch, kh, kw, in_ch), input
        data = shapes[inputs[2]] if len(inputs) > 2 else ()
        return int(np.prod(data[:-1])) * int(np.prod(weights)) if data else 0
    if op == "CONV_3D":  # weights: (kd, kh, kw, in_ch, out_ch)
        return int(np.prod(out)) * int(np.prod(weights[:-1]))
    if op == "BATCH_MATMUL":
        lhs = shapes[inputs[0]]
        return int(np.prod(out)) * (lhs[-1] if lhs else 0)
    return 0


def _recurrent_macs(inputs: list[int], shapes: list[tuple[int, ...]], constant: list[bool]) -> int:
    """Every constant weight matrix (input, recurrent, projection; 2-D) times the time steps:
    the input is (batch, time, features) or (time, batch, features), batch 1."""
    if not inputs or len(shapes[inputs[0]]) != 3:
        return 0
    steps = int(np.prod(shapes[inputs[0]][:-1]))
    matrices = [t for t in inputs[1:] if constant[t] and len(shapes[t]) == 2]
    return steps * sum(int(np.prod(shapes[t])) for t in matrices)


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    if dtype == "other":
        return 0
    return int(np.prod(shape)) * np.dtype(dtype).itemsize
