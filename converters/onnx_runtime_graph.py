"""What ONNX Runtime really runs: the graph after its optimizations, and each node's precision.

A QDQ model only says which tensors are quantized. ONNX Runtime then fuses some
DequantizeLinear -> op -> QuantizeLinear groups into integer kernels (QLinearConv, QGemm, ...) and
runs the rest as float kernels between Q/DQ pairs, paying the conversions on top. Which ones fuse
depends on the op, its neighbours and the weights' quantization (per-channel depthwise
convolutions often stay float), so the op table reads the graph ONNX Runtime itself optimized
(``optimized_model_filepath``) at the level the board's session uses.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit._optional import require
from edgekit.converters._errors import first_line
from edgekit.errors import ConversionError
from edgekit.vocab import OpPrecision

# Kernels that compute on integers. Names are ORT's (ai.onnx and com.microsoft domains).
INTEGER_KERNELS = frozenset(
    {"QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "QLinearSigmoid",
     "QLinearLeakyRelu", "QLinearSoftmax", "QLinearConcat", "QLinearAveragePool",
     "QLinearGlobalAveragePool", "QLinearReduceMean", "QLinearWhere", "QLinearConvTranspose",
     "ConvInteger", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
     "QAttention", "QEmbedLayerNormalization", "QuickGelu_int8"}
)  # fmt: skip
CONVERSIONS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
# Kernels whose integer inputs give integer outputs (pooling, data movement on quantized data).
_INT_PASSTHROUGH_OUT = frozenset({"MatMulIntegerToFloat", "DynamicQuantizeMatMul"})
_INT_ELEM_TYPES = frozenset({2, 3})  # uint8, int8


@dataclass(frozen=True)
class RuntimeNode:
    """A node of the optimized graph: what kernel runs, in which precision."""

    name: str
    op: str
    precision: OpPrecision


def optimized_graph(content: bytes, *, level: str = "all") -> Any:
    """The model as ONNX Runtime's CPU session optimizes it (a ModelProto)."""
    ort = require("onnxruntime", extra="build")
    onnx = require("onnx", extra="build")
    levels = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    with tempfile.TemporaryDirectory(prefix="edgekit-ort-opt-") as tmp:
        target = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[level]
        options.optimized_model_filepath = str(target)
        options.log_severity_level = 3  # the NCHWc "hardware specific" warning is expected
        try:
            ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])
            return onnx.load(str(target))
        except Exception as exc:  # ORT's pybind errors, protobuf errors
            raise ConversionError(
                f"cannot read the graph ONNX Runtime optimizes: {first_line(exc)}"
            ) from exc


def runtime_nodes(optimized: Any) -> dict[str, RuntimeNode]:
    """Each tensor produced in the optimized graph -> the node producing it, with its precision.

    Integer kernels are int8; Q/DQ are conversions; a float op whose activations all come from
    DequantizeLinear and whose outputs all go to QuantizeLinear is a float kernel between Q/DQ;
    an op fed only by integer tensors (MaxPool, Reshape on quantized data) is int8.
    """
    graph = optimized.graph
    constants = {init.name for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output if out}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    integer = {v.name for v in graph.input if v.type.tensor_type.elem_type in _INT_ELEM_TYPES}
    integer |= {i.name for i in graph.initializer if i.data_type in _INT_ELEM_TYPES}
    found: dict[str, RuntimeNode] = {}
    for node in graph.node:  # ORT writes the graph in topological order
        precision = _precision(node, producer, consumers, constants, integer)
        if precision == OpPrecision.INT8 and node.op_type not in _INT_PASSTHROUGH_OUT:
            integer.update(o for o in node.output if o)
        if node.op_type == "QuantizeLinear":
            integer.update(o for o in node.output if o)
        runtime = RuntimeNode(node.name, node.op_type, precision)
        for out in node.output:
            if out:
                found[out] = runtime
    return found


def _precision(
    node: Any,
    producer: dict[str, Any],
    consumers: dict[str, list[Any]],
    constants: set[str],
    integer: set[str],
) -> OpPrecision:
    op = node.op_type
    if op in CONVERSIONS:
        return OpPrecision.CONVERT
    if op in INTEGER_KERNELS:
        return OpPrecision.INT8
    activations = [i for i in node.input if i and i not in constants]
    if activations and all(i in integer for i in activations):
        return OpPrecision.INT8
    outputs = [o for o in node.output if o]
    fed_by_dq = bool(activations) and all(
        i in producer and producer[i].op_type == "DequantizeLinear"
        for i in activations
        if i not in integer
    )
    feeds_q = bool(outputs) and all(
        consumers.get(o) and all(c.op_type == "QuantizeLinear" for c in consumers[o])
        for o in outputs
    )
    return OpPrecision.FLOAT_QDQ if fed_by_dq and feeds_q else OpPrecision.FLOAT


class RuntimeIndex:
    """Finds the optimized-graph node that runs each node of the original graph."""

    def __init__(self, optimized: Any) -> None:
        self.by_tensor = runtime_nodes(optimized)
        self._by_name = {r.name: r for r in self.by_tensor.values()}

    def node_of(self, node: Any, consumers: dict[str, list[Any]]) -> RuntimeNode | None:
        """The node that runs ``node``, or None when it was folded away.

        ORT names a node it creates from a fusion after the node it replaces, plus
        ``_token_<n>`` (QLinearConv ``Conv.24_token_137`` for ``Conv.24``), or after its output
        tensor plus ``_nchwc`` (the NCHWc layout pass); a node that survives keeps its name.
        Failing these, a node fused into another (a Relu into the Conv before it) is found by
        following its outputs to the first tensor that still exists.
        """
        name = node.name
        if name:
            if name in self._by_name:
                return self._by_name[name]
            prefix = f"{name}_token_"
            for candidate, runtime in self._by_name.items():
                if candidate.startswith(prefix):
                    return runtime
        for out in node.output:  # the NCHWc layout pass names its nodes after the output
            if out and f"{out}_nchwc" in self._by_name:
                return self._by_name[f"{out}_nchwc"]
        for tensor in _forward(node, consumers):
            if tensor in self.by_tensor:
                return self.by_tensor[tensor]
        return None


def _forward(node: Any, consumers: dict[str, list[Any]]) -> Iterator[str]:
    seen: set[str] = set()
    frontier = [o for o in node.output if o]
    while frontier:
        tensor = frontier.pop(0)
        if tensor in seen:
            continue
        seen.add(tensor)
        yield tensor
        if len(seen) > 64:  # fused groups are a handful of nodes; never walk the whole graph
            return
        for consumer in consumers.get(tensor, ()):
            frontier.extend(o for o in consumer.output if o)
