"""One-shot magnitude pruning of ONNX models: weight initializers and weights in Constant nodes.

Per weighted node (Conv, ConvTranspose, Gemm, MatMul with a constant weight), the smallest
weights are zeroed to the target sparsity, as for Keras models. There is no fine-tuning here
(an ONNX file carries no training graph); the accuracy gate decides whether the result is kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.converters.onnx_model import OnnxModel, onnx_module
from edgekit.converters.prune_magnitude import LayerSparsity, magnitude_mask
from edgekit.errors import ConversionError

_WEIGHTED = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}


def prune_onnx(model: OnnxModel, sparsity: float) -> tuple[OnnxModel, list[LayerSparsity]]:
    """A copy of ``model`` with the smallest weights of every weighted node set to zero."""
    onnx = onnx_module()
    numpy_helper = onnx.numpy_helper
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    constant_nodes = {node.output[0]: node for node in graph.node if node.op_type == "Constant"}
    figures: list[LayerSparsity] = []
    done: set[str] = set()
    for node in graph.node:
        index = _WEIGHTED.get(node.op_type)
        if index is None or len(node.input) <= index:
            continue
        name = node.input[index]
        if name in done:
            continue
        tensor = _weight_tensor(name, initializers, constant_nodes)
        if tensor is None:
            continue  # an activation (e.g. attention's MatMul of two activations)
        weights = numpy_helper.to_array(tensor)
        if weights.ndim < 2 or not np.issubdtype(weights.dtype, np.floating):
            continue
        pruned = weights * magnitude_mask(weights, sparsity)
        tensor.CopyFrom(numpy_helper.from_array(pruned.astype(weights.dtype), tensor.name))
        done.add(name)
        figures.append(
            LayerSparsity(
                layer=node.name or node.op_type,
                weight=name,
                size=int(pruned.size),
                target=sparsity,
                achieved=float(np.mean(pruned == 0)),
            )
        )
    if not figures:
        raise ConversionError(
            "the model has no prunable layers (Conv, ConvTranspose, Gemm or MatMul with "
            "constant weights)"
        )
    notes = [*model.notes, f"magnitude-pruned {len(figures)} weight tensors to {sparsity:.0%}"]
    return OnnxModel(proto, model.opset, model.inputs, model.outputs, notes), figures


def _weight_tensor(name: str, initializers: dict[str, Any], constants: dict[str, Any]) -> Any:
    if name in initializers:
        return initializers[name]
    node = constants.get(name)
    if node is not None:
        for attr in node.attribute:
            if attr.name == "value":
                return attr.t
    return None
