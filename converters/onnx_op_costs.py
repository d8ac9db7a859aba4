"""Which ops of a QDQ model are slower in int8 than in float, from ONNX Runtime's own profiler.

The latency-aware fallback: an op pays, in int8, for its kernel plus the DequantizeLinear nodes
that feed it and the QuantizeLinear nodes after it. Where ORT has no integer kernel for it, or the
integer kernel is slow (some depthwise convolutions), that sum exceeds what the same op costs in
the fp32 model, and keeping it float is faster. Both models are profiled on the same input, per
node of the graph ORT really runs; each node is traced back to the op of the model it came from.

Keeping one op float between two quantized neighbours saves nothing: the neighbours still need
the conversions on the tensors it shares with them. So the ops kept float are the slow ones that
form connected regions (two or more slow ops joined directly or through data movement), or that
touch the model's inputs or outputs; inside a region the conversions disappear.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.converters._errors import first_line
from edgekit.converters.formats import OpCost
from edgekit.converters.model_stats import DATA_MOVEMENT_OPS
from edgekit.converters.onnx_runtime_graph import RuntimeIndex, optimized_graph
from edgekit.errors import ConversionError


def kernel_times(content: bytes, feed: dict[str, np.ndarray], *, threads: int, runs: int = 30) -> (
    dict[str, float]
):  # fmt: skip
    """Median time per node of the optimized graph over ``runs`` inferences, in µs."""
    ort = require("onnxruntime", extra="build")
    with tempfile.TemporaryDirectory(prefix="edgekit-ort-prof-") as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])
            for _ in range(runs + 1):  # the first, cold run is dropped below
                session.run(None, feed)
            events = json.loads(Path(session.end_profiling()).read_text())
        except Exception as exc:
            raise ConversionError(f"profiling the ONNX model failed: {first_line(exc)}") from exc
    per_node: dict[str, list[float]] = defaultdict(list)
    for event in events:
        name = event.get("name", "")
        if event.get("cat") == "Node" and name.endswith("_kernel_time"):
            per_node[name.removesuffix("_kernel_time")].append(float(event["dur"]))
    return {node: float(np.median(times[1:] or times)) for node, times in per_node.items()}


def op_costs(
    source: Any,
    fp32: bytes,
    int8: bytes,
    feed: dict[str, np.ndarray],
    *,
    threads: int,
    runs: int = 30,
) -> tuple[OpCost, ...]:
    """Cost of every compute op of ``source`` (the fp32 ModelProto both models came from, with
    named nodes) in the fp32 and the int8 model, profiled on ``feed``."""
    float_times = kernel_times(fp32, feed, threads=threads, runs=runs)
    int8_times = kernel_times(int8, feed, threads=threads, runs=runs)
    float_graph, int8_graph = optimized_graph(fp32), optimized_graph(int8)
    float_index, int8_index = RuntimeIndex(float_graph), RuntimeIndex(int8_graph)
    conversions = _conversions_around(int8_graph.graph)
    consumers = _consumers(source.graph)
    costs = []
    for node in source.graph.node:
        if node.op_type in DATA_MOVEMENT_OPS or node.op_type == "Constant" or not node.name:
            continue
        in_float = float_index.node_of(node, consumers)
        in_int8 = int8_index.node_of(node, consumers)
        if in_float is None or in_int8 is None or in_int8.name not in int8_times:
            continue
        around = sum(int8_times.get(c, 0.0) for c in conversions.get(in_int8.name, ()))
        costs.append(
            OpCost(
                node=node.name,
                op=node.op_type,
                float_us=float_times.get(in_float.name, 0.0),
                int8_us=int8_times[in_int8.name] + around,
                int8_kernel=in_int8.op,
            )
        )
    keep = _regions(source.graph, {c.node for c in costs if c.slower_in_int8})
    return tuple(dataclasses.replace(c, keep_float=c.node in keep) for c in costs)


def _regions(graph: Any, slow: set[str]) -> set[str]:
    """The slow ops worth keeping float: those with a slow neighbour (through data movement
    ops), or next to the model's own inputs or outputs."""
    ends = {v.name for v in graph.input} | {v.name for v in graph.output}
    producer = {o: n for n in graph.node for o in n.output if o}
    consumers = _consumers(graph)

    def neighbours(node: Any) -> set[str]:
        """The ops that produce what ``node`` reads and consume what it writes, looking through
        data movement. Not its siblings (other readers of its inputs): two float readers of a
        quantized tensor still need it dequantized, so nothing is saved between them."""
        found: set[str] = set()
        up, down = list(node.input), list(node.output)
        seen: set[str] = set()
        while up:
            tensor = up.pop()
            other = producer.get(tensor) if tensor and tensor not in seen else None
            seen.add(tensor)
            if other is None:
                continue
            if other.op_type in DATA_MOVEMENT_OPS:  # look through reshapes and the like
                up.extend(other.input)
            else:
                found.add(other.name)
        seen.clear()
        while down:
            tensor = down.pop()
            if not tensor or tensor in seen:
                continue
            seen.add(tensor)
            for other in consumers.get(tensor, ()):
                if other.op_type in DATA_MOVEMENT_OPS:
                    down.extend(other.output)
                else:
                    found.add(other.name)
        return found

    keep = set()
    for node in graph.node:
        if node.name not in slow:
            continue
        touches_end = any(t in ends for t in (*node.input, *node.output))
        if touches_end or neighbours(node) & slow:
            keep.add(node.name)
    return keep


def _consumers(graph: Any) -> dict[str, list[Any]]:
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def _conversions_around(graph: Any) -> dict[str, tuple[str, ...]]:
    """Optimized node -> the DequantizeLinear nodes feeding it and QuantizeLinear nodes after it."""
    producer = {out: node for node in graph.node for out in node.output if out}
    consumers = _consumers(graph)
    around: dict[str, tuple[str, ...]] = {}
    for node in graph.node:
        feeding = [
            producer[i].name
            for i in node.input
            if i in producer and producer[i].op_type == "DequantizeLinear"
        ]
        after = [
            c.name
            for o in node.output
            for c in consumers.get(o, ())
            if c.op_type == "QuantizeLinear"
        ]
        around[node.name] = tuple(feeding + after)
    return around
