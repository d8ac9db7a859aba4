"""Reading an ONNX artifact: ops and their precision, MACs, weights, memory.

MACs, weights and memory come from the model as written. Precision comes from what ONNX Runtime
runs (:mod:`edgekit.converters.onnx_runtime_graph`): an op of a QDQ model is int8 only where ORT
fused it into an integer kernel; the others are float kernels between Q/DQ pairs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.converters._errors import first_line
from edgekit.converters.model_stats import ModelStats, OpInfo, WeightInfo
from edgekit.converters.onnx_runtime_graph import (
    CONVERSIONS,
    RuntimeIndex,
    optimized_graph,
)
from edgekit.converters.onnx_shapes import tensor_shapes
from edgekit.errors import ConversionError
from edgekit.vocab import OpPrecision

_CONVERSION = CONVERSIONS
_INTEGER_OPS = {"ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul"}
_WEIGHTED = {"Conv", "ConvInteger", "QLinearConv", "Gemm", "MatMul", "MatMulInteger",
             "ConvTranspose"}  # fmt: skip
# Recurrent ops: every weight matrix is applied once per time step.
_RECURRENT = {"LSTM", "GRU", "RNN"}
# Ops that run subgraphs or whose cost the graph does not state: MACs unknown.
_UNCOUNTED = {"Loop", "Scan", "If", "Einsum"}
_FLOAT = {1: "float32", 10: "float16", 11: "float64"}
_ITEMSIZE = {1: 4, 10: 2, 11: 8, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 9: 1}


def inspect_onnx(content: bytes, *, optimization: str = "all") -> ModelStats:
    """Op table, MACs (batch 1), weights and a memory estimate of an ONNX model; precision as
    ONNX Runtime runs it at graph optimization level ``optimization`` (the board's session
    uses ORT's default, "all")."""
    onnx = require("onnx", extra="build")
    numpy_helper = require("onnx.numpy_helper", extra="build")
    try:
        proto = onnx.load_model_from_string(content)
    except Exception as exc:
        raise ConversionError(f"not a readable ONNX model: {first_line(exc)}") from exc
    proto, shapes, types = tensor_shapes(proto)
    graph = proto.graph
    constants: dict[str, np.ndarray] = {
        init.name: numpy_helper.to_array(init) for init in graph.initializer
    }
    for node in graph.node:  # weights held in Constant nodes count as constants too
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attr.t)
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def weight_source(name: str) -> str:
        """Follow a DequantizeLinear back to the stored (int8) weight."""
        node = producer.get(name)
        if node is not None and node.op_type == "DequantizeLinear" and node.input[0] in constants:
            return str(node.input[0])
        return name

    optimized = optimized_graph(content, level=optimization)
    runtime = RuntimeIndex(optimized)
    # Conversions as ORT runs them: the ones it fused away cost nothing.
    ops: list[OpInfo] = [
        OpInfo(op=n.op_type, precision=OpPrecision.CONVERT, macs=0, runs_as=n.op_type, node=n.name)
        for n in optimized.graph.node
        if n.op_type in CONVERSIONS
    ]
    weights: list[WeightInfo] = []
    params = 0
    arena = 0
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        written = _precision(node, producer, consumers, constants, types)
        ran = runtime.node_of(node, consumers) if written is not OpPrecision.INDEX else None
        if written is not OpPrecision.CONVERT:
            use = ran is not None and ran.precision != OpPrecision.CONVERT
            ops.append(
                OpInfo(
                    op=node.op_type,
                    precision=ran.precision if use and ran else written,
                    macs=_macs(node, shapes),
                    runs_as=ran.op if use and ran else node.op_type,
                    node=ran.name if use and ran else node.name,
                    depthwise=_is_depthwise(node, shapes),
                )
            )
        if node.op_type in _WEIGHTED and len(node.input) > 1:
            source = weight_source(node.input[1])
            if source in constants and constants[source].ndim >= 2:
                data = constants[source]
                weights.append(WeightInfo(node.op_type, source, int(data.size),
                                          int(np.count_nonzero(data == 0))))  # fmt: skip
                params += int(data.size)
                if len(node.input) > 2 and weight_source(node.input[2]) in constants:
                    params += int(constants[weight_source(node.input[2])].size)
        live = [n for n in (*node.input, *node.output) if n and n not in constants]
        arena = max(arena, sum(_nbytes(shapes.get(n), types.get(n)) for n in live))
    uncounted = tuple(sorted({n.op_type for n in graph.node if n.op_type in _UNCOUNTED}))
    return ModelStats(
        ops=tuple(ops),
        params=params,
        arena_bytes=arena,
        weights=tuple(weights),
        uncounted_ops=uncounted,
    )


def _precision(
    node: Any,
    producer: dict[str, Any],
    consumers: dict[str, list[Any]],
    constants: dict[str, np.ndarray],
    types: dict[str, int],
) -> OpPrecision:
    if node.op_type in _CONVERSION:
        return OpPrecision.CONVERT
    if node.op_type in _INTEGER_OPS:
        return OpPrecision.INT8
    outputs = [o for o in node.output if o]
    if outputs and all(types.get(o) not in _FLOAT for o in outputs):
        integer = any(types.get(o) in (2, 3) for o in outputs)
        return OpPrecision.INT8 if integer else OpPrecision.INDEX
    activations = [i for i in node.input if i and i not in constants]
    float_inputs = [i for i in activations if types.get(i) in _FLOAT]
    fed_by_dq = all(
        producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"
        for i in float_inputs
    )
    feeds_q = all(
        consumers.get(o) and all(c.op_type == "QuantizeLinear" for c in consumers[o])
        for o in outputs
    )
    return OpPrecision.INT8 if float_inputs and fed_by_dq and feeds_q else OpPrecision.FLOAT


def _macs(node: Any, shapes: dict[str, tuple[int, ...]]) -> int:
    op = node.op_type
    if op in _RECURRENT:
        return _recurrent_macs(node, shapes)
    out = shapes.get(node.output[0]) if node.output else None
    if not out or op not in _WEIGHTED:
        return 0
    weight_index = 3 if op == "QLinearConv" else 1
    weight = shapes.get(node.input[weight_index]) if len(node.input) > weight_index else None
    if not weight:
        return 0
    if op in ("Conv", "ConvInteger", "QLinearConv"):  # weight: (out, in/group, kh, kw)
        return int(np.prod(out)) * int(np.prod(weight[1:]))
    if op == "ConvTranspose":  # weight: (in, out/group, kh, kw); MACs over the input positions
        data = shapes.get(node.input[0])
        return int(np.prod(data)) * int(np.prod(weight[1:])) if data else 0
    if op == "Gemm":
        transposed = any(a.name == "transB" and a.i for a in node.attribute)
        k = weight[1] if transposed else weight[0]
        return int(np.prod(out)) * int(k)
    # MatMul / MatMulInteger: (..., M, K) x (K, N)
    return int(np.prod(out)) * int(weight[-2] if len(weight) >= 2 else weight[0])


def _is_depthwise(node: Any, shapes: dict[str, tuple[int, ...]]) -> bool:
    """A grouped convolution with one input channel per group."""
    if node.op_type not in ("Conv", "ConvInteger", "QLinearConv"):
        return False
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    weight = shapes.get(node.input[3 if node.op_type == "QLinearConv" else 1])
    return group > 1 and weight is not None and len(weight) >= 2 and weight[1] == 1


def _recurrent_macs(node: Any, shapes: dict[str, tuple[int, ...]]) -> int:
    """LSTM/GRU/RNN: W (dirs, gates*hidden, input) and R (dirs, gates*hidden, hidden) are each
    applied once per time step of X ((seq, batch, input), or (batch, seq, input) with
    layout=1); batch 1."""
    x = shapes.get(node.input[0])
    w = shapes.get(node.input[1]) if len(node.input) > 1 else None
    r = shapes.get(node.input[2]) if len(node.input) > 2 else None
    if not x or not w or not r or len(x) != 3:
        return 0
    batch_first = any(a.name == "layout" and a.i == 1 for a in node.attribute)
    steps = x[1] if batch_first else x[0]
    return int(steps) * (int(np.prod(w)) + int(np.prod(r)))


def _nbytes(shape: tuple[int, ...] | None, elem_type: int | None) -> int:
    if shape is None or elem_type not in _ITEMSIZE:
        return 0
    return int(np.prod(shape)) * _ITEMSIZE[elem_type]
