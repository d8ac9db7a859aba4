"""Which modules of a PT2E-quantized torch graph cost the most accuracy, by qualified name.

The accuracy fallback keeps layers float by the names the quantizer accepts; for PT2E those are
module paths (``layer1.conv2``). The quantized graph (fake-quantized, in torch) and the same graph
left float (batch norms folded the same way, so node names and values line up) run on the sample;
each quantized activation is compared with its float twin, and the SQNR a node loses is charged
to the module it was traced in. Comparing in torch, not in the ``.tflite``, keeps the link from a
loss to a module name that the flatbuffer's tensor names do not carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgekit.converters.formats import GraphNode, LayerCost, channel_sqnr_db, rank_by_sqnr_loss
from edgekit.converters.torch_pt2e import batches, module_paths, torch_module

# Nodes that only move data or read shapes: keeping them float would not win accuracy back.
_DATA_MOVEMENT = (
    "view", "reshape", "permute", "transpose", "flatten", "unflatten", "squeeze", "unsqueeze",
    "expand", "getitem", "slice", "select", "cat", "clone", "contiguous", "sym_size", "t.default",
    "max_pool", "_assert", "alias", "detach", "dropout", "split", "chunk", "stack",
)  # fmt: skip


def _is_qdq(node: Any) -> bool:
    return node.op == "call_function" and "quantize_per_" in str(node.target)


def _origin(node: Any) -> Any:
    """The node whose value reaches ``node`` through quantize/dequantize pairs."""
    while _is_qdq(node) and node.args:
        node = node.args[0]
    return node


def _quantized_outputs(graph: Any) -> dict[str, str]:
    """Compute node -> the dequantize node that carries its quantized value downstream."""
    seen: dict[str, str] = {}
    for node in graph.nodes:
        if _is_qdq(node) and "dequantize" in str(node.target):
            source = node.args[0] if node.args else None
            if source is not None and _is_qdq(source) and "dequantize" not in str(source.target):
                seen.setdefault(_origin(source).name, node.name)
    return seen


def _leaf_module(node: Any) -> str:
    """The innermost named module ``node`` was traced in ('' for the root module)."""
    paths = [p for p in module_paths(node) if p]
    return paths[-1] if paths else ""


def _record(graph_module: Any, inputs: Any) -> dict[str, Any]:
    """Every node's tensor output for one call."""
    torch = torch_module()
    values: dict[str, Any] = {}

    class Recorder(torch.fx.Interpreter):  # type: ignore[name-defined]
        def run_node(self, n: Any) -> Any:
            out = super().run_node(n)
            if isinstance(out, torch.Tensor):
                values[n.name] = out.detach()
            return out

    with torch.no_grad():
        Recorder(graph_module).run(inputs)
    return values


def rank_modules(
    quantized: Any, reference: Any, sample: np.ndarray, *, batch: int
) -> list[LayerCost]:
    """Modules of ``quantized`` ordered by the SQNR (dB, against ``reference``) they lose,
    worst first; each cost's ``nodes`` are the module names to keep float."""
    torch = torch_module()
    carried = _quantized_outputs(quantized.graph)
    ref_values: dict[str, list[np.ndarray]] = {}
    test_values: dict[str, list[np.ndarray]] = {}
    for chunk in batches(sample, batch):
        x = torch.from_numpy(chunk)
        ref = _record(reference, x)
        test = _record(quantized, x)
        for name, dq in carried.items():
            if name in ref and dq in test and ref[name].shape == test[dq].shape:
                ref_values.setdefault(name, []).append(ref[name].float().numpy())
                test_values.setdefault(name, []).append(test[dq].float().numpy())
    sqnr = {}
    for name, refs in ref_values.items():
        a, b = np.concatenate(refs), np.concatenate(test_values[name])
        sqnr[name] = channel_sqnr_db(a, b, channel_axis=1 if a.ndim == 4 else -1)
    nodes = []
    modules = {}
    for node in quantized.graph.nodes:
        if node.op != "call_function" or _is_qdq(node):
            continue
        module = _leaf_module(node)
        modules[node.name] = module
        target = str(node.target)
        inputs = tuple(
            dict.fromkeys(_origin(a).name for a in node.all_input_nodes if a.op != "get_attr")
        )
        nodes.append(GraphNode(
            name=node.name, op=target.split(".")[-2] if "." in target else target,
            inputs=inputs, output=node.name,
            candidate=bool(module) and not any(word in target for word in _DATA_MOVEMENT),
        ))  # fmt: skip
    return _by_module(rank_by_sqnr_loss(nodes, sqnr), modules)


def _by_module(costs: Sequence[LayerCost], modules: dict[str, str]) -> list[LayerCost]:
    """Node costs as module costs: the worst node of each module, naming the modules (its own
    and those of the nodes fused into it) that keeping it float means."""
    best: dict[str, LayerCost] = {}
    for cost in costs:
        own = modules.get(cost.name, "")
        names = tuple(dict.fromkeys(m for n in cost.nodes if (m := modules.get(n, ""))))
        if not own or (own in best and best[own].loss_db >= cost.loss_db):
            continue
        best[own] = LayerCost(name=own, op=cost.op, loss_db=cost.loss_db, nodes=names or (own,))
    return sorted(best.values(), key=lambda c: -c.loss_db)
