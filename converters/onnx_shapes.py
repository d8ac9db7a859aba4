"""Every tensor's shape in an ONNX model, for one sample: what MACs and memory are counted from.

Static shape inference alone misses shapes an exporter computes at run time (the TorchScript
exporter builds attention's reshapes from Shape/Gather/Div chains; a dynamic batch axis leaves
them unknown), and an op whose input shape is unknown counts 0 MACs: the same model would count
differently per exporter. So dynamic input axes are pinned to 1, shapes inferred with data
propagation, and then the model is run once on zeros with every intermediate tensor as an output:
the shapes ONNX Runtime actually produced are the ones counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit._optional import require

# ONNX element type -> numpy dtype, for feeding zeros.
_NUMPY = {1: np.float32, 10: np.float16, 11: np.float64, 2: np.uint8, 3: np.int8, 5: np.int16,
          6: np.int32, 7: np.int64, 9: np.bool_}  # fmt: skip


def tensor_shapes(proto: Any) -> tuple[Any, dict[str, tuple[int, ...]], dict[str, int]]:
    """(the model with inferred value infos, shape per tensor name, element type per name)."""
    onnx = require("onnx", extra="build")
    pinned = onnx.ModelProto()
    pinned.CopyFrom(proto)
    for value in pinned.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if not (dim.HasField("dim_value") and dim.dim_value > 0):
                dim.Clear()
                dim.dim_value = 1  # figures are per inference of one sample
    try:
        inferred = onnx.shape_inference.infer_shapes(pinned, data_prop=True)
    except Exception:  # inference has limits (custom domains); the run below still answers
        inferred = pinned
    shapes, types = _value_infos(inferred.graph)
    shapes.update(_ran(pinned, types))
    return inferred, shapes, types


def _value_infos(graph: Any) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    shapes: dict[str, tuple[int, ...]] = {}
    types: dict[str, int] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        tensor = value.type.tensor_type
        types[value.name] = tensor.elem_type
        if tensor.HasField("shape"):
            # Unknown axes count as 1: figures are per inference of one sample.
            shapes[value.name] = tuple(
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
                for d in tensor.shape.dim
            )
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
        types[init.name] = init.data_type
    return shapes, types


def _ran(pinned: Any, types: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """Shapes of every node output from one run on zeros; empty when the model cannot run so
    (an input the zeros do not suit, an op ORT lacks)."""
    ort = require("onnxruntime", extra="build")
    onnx = require("onnx", extra="build")
    probe = onnx.ModelProto()
    probe.CopyFrom(pinned)
    present = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in present and node.op_type != "Constant":
                probe.graph.output.append(onnx.ValueInfoProto(name=name))
                present.add(name)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    # Unoptimized: fused nodes would hide the tensors between them.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])  # fmt: skip
        feed: dict[str, np.ndarray] = {
            i.name: np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in i.shape],
                             dtype=_NUMPY.get(types.get(i.name, 1), np.float32))
            for i in session.get_inputs()
        }  # fmt: skip
        values = session.run(None, feed)
    except Exception:  # not every model runs on zeros; inferred shapes stand then
        return {}
    return {
        meta.name: tuple(int(d) for d in np.shape(value))
        for meta, value in zip(session.get_outputs(), values, strict=True)
    }
