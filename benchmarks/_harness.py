"""Measurement helpers the benchmarks share: a bare LiteRT loop, no edgekit code involved."""

from __future__ import annotations

import os
import platform
import time

import numpy as np


def machine() -> str:
    """One line describing this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def _interpreter(model: bytes, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model, num_threads=threads)
    interp.allocate_tensors()
    return interp


def _feed(detail, x: np.ndarray) -> np.ndarray:
    scale, zero = detail["quantization"]
    if detail["dtype"] in (np.int8, np.uint8) and scale:
        info = np.iinfo(detail["dtype"])
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])
    return x.astype(detail["dtype"])


def _read(detail, y: np.ndarray) -> np.ndarray:
    scale, zero = detail["quantization"]
    if detail["dtype"] in (np.int8, np.uint8) and scale:
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)


def top1(model: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in percent, one sample at a time."""
    interp = _interpreter(model, 1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    hits = 0
    for sample, label in zip(x, y, strict=True):
        interp.set_tensor(inp["index"], _feed(inp, sample[None]))
        interp.invoke()
        hits += int(np.argmax(_read(out, interp.get_tensor(out["index"]))[0]) == label)
    return 100.0 * hits / len(y)


def p50_ms(
    model: bytes, sample: np.ndarray, *, threads: int, runs: int = 300, warmup: int = 30
) -> float:
    """Median single-sample latency in ms: warm-up, then timed invokes."""
    interp = _interpreter(model, threads)
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], _feed(inp, sample[None]))
    for _ in range(warmup):
        interp.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)
