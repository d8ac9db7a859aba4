"""Latency measurement the way LiteRT's benchmark_model and onnxruntime_perf_test do it.

First (cold) inference, warm-up runs, then timed runs: at least ``runs`` of them, and more until
``min_seconds`` have passed. Percentiles, not only the mean.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from edgekit.progress import Task
from edgekit.runtime.backend import Backend
from edgekit.schema import LatencyStats


def measure_latency(
    backend: Backend,
    inputs: Sequence[np.ndarray],
    *,
    warmup: int = 5,
    runs: int = 50,
    min_seconds: float = 0.0,
    init_ms: float | None = None,
    task: Task | None = None,
) -> LatencyStats:
    """Time ``backend.invoke(inputs)``; ``inputs`` are in the model's own dtypes."""
    first_ms, times = time_runs(
        backend, inputs, warmup=warmup, runs=runs, min_seconds=min_seconds, task=task
    )
    return latency_stats(times, init_ms=init_ms, first_ms=first_ms)


def time_runs(
    backend: Backend,
    inputs: Sequence[np.ndarray],
    *,
    warmup: int,
    runs: int,
    min_seconds: float = 0.0,
    task: Task | None = None,
) -> tuple[float, list[float]]:
    """(first inference, timed runs) in milliseconds, after ``warmup`` untimed runs."""
    start = time.perf_counter()
    backend.invoke(inputs)
    first_ms = (time.perf_counter() - start) * 1e3
    for _ in range(warmup):
        backend.invoke(inputs)
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < runs or time.perf_counter() - began < min_seconds:
        t0 = time.perf_counter()
        backend.invoke(inputs)
        times.append((time.perf_counter() - t0) * 1e3)
        if task is not None and len(times) <= runs:
            task.advance()
    return first_ms, times


def latency_stats(
    times_ms: Sequence[float], *, init_ms: float | None = None, first_ms: float | None = None
) -> LatencyStats:
    """Summary statistics of latencies in milliseconds."""
    arr = np.asarray(times_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return LatencyStats(
        count=len(arr),
        mean_ms=float(arr.mean()),
        std_ms=float(arr.std()),
        min_ms=float(arr.min()),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        max_ms=float(arr.max()),
        init_ms=init_ms,
        first_ms=first_ms,
    )
