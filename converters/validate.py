"""Validation of artifacts with the real interpreters: accuracy against fp32 and host latency.

The interpreters are the board's own (``edgekit.runtime``'s public API), so a build measures what
the board will run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from edgekit import metrics
from edgekit.datasets import LabelledData
from edgekit.figures import AccuracyFigures
from edgekit.progress import Progress, SilentProgress
from edgekit.runtime import Predictor, measure_latency, open_backend, to_model_dtype
from edgekit.schema import LatencyStats
from edgekit.vocab import MetricName, ModelFormat


def outputs_of(
    content: bytes,
    data: LabelledData,
    *,
    backend: str,
    threads: int = 1,
    label: str = "model",
    progress: Progress | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """The model's first output for every sample of ``data``, as float32."""
    predictor = Predictor(open_backend(backend, content, threads=threads), batch_size=batch_size)
    with (progress or SilentProgress()).task(f"Evaluating {label}", total=len(data)) as task:
        return predictor.predict(data.xs, task=task)


class Reference:
    """fp32 outputs on the accuracy data, per format, computed once: what every candidate of
    that format is compared with."""

    def __init__(self, data: LabelledData | None, *, threads: int, progress: Progress) -> None:
        self.data = data
        self._threads = threads
        self._progress = progress
        self._outputs: dict[ModelFormat, np.ndarray] = {}

    def outputs(self, fmt: ModelFormat, fp32: bytes, *, backend: str) -> np.ndarray:
        """The fp32 artifact ``fp32``'s outputs (computed on first call per format)."""
        if fmt not in self._outputs:
            self._outputs[fmt] = self.run(fp32, fmt, backend=backend, label="fp32")
        return self._outputs[fmt]

    def run(self, content: bytes, fmt: ModelFormat, *, backend: str, label: str) -> np.ndarray:
        """Any artifact's outputs on the accuracy data."""
        if self.data is None:
            raise ValueError("no accuracy data to run the model on")
        return outputs_of(
            content,
            self.data,
            backend=backend,
            threads=self._threads,
            label=f"{label} ({fmt.value})",
            progress=self._progress,
        )


def accuracy_of(
    reference: np.ndarray,
    test: np.ndarray,
    data: LabelledData,
    *,
    data_label: str,
    pruned: np.ndarray | None = None,
) -> AccuracyFigures:
    """Top-1 against labels, or top-1 agreement with fp32, or SQNR for non-classifiers: the
    same metric the board computes (:func:`edgekit.metrics.score`), plus the fp32 baseline; as
    the build report and the manifest hold it."""
    scored = metrics.score(test, labels=data.y, reference=reference)
    assert scored is not None  # a reference is given, so some metric always applies
    name, quantized = scored
    fp32: float | None = None  # SQNR has no fp32 figure: fp32 is the reference itself
    if name is MetricName.TOP1 and data.y is not None:
        fp32 = metrics.top1(reference, data.y)
    elif name is MetricName.AGREEMENT:
        fp32 = 100.0
    mid = None
    if pruned is not None:
        pruned_scored = metrics.score(pruned, labels=data.y, reference=reference)
        mid = None if pruned_scored is None else pruned_scored[1]
    drop = None if fp32 is None else fp32 - quantized
    return AccuracyFigures(metric=name, fp32=fp32, quantized=quantized, drop_pt=drop,
                           samples=len(data), data=data_label, pruned_fp32=mid)  # fmt: skip


def host_latency(
    content: bytes, sample: Sequence[np.ndarray], *, backend: str, threads: int, runs: int = 50
) -> LatencyStats:
    """p50 and friends of one-sample inference on this machine; ``sample`` has one array per
    input, without the batch axis."""
    start = time.perf_counter()
    model = open_backend(backend, content, threads=threads)
    init_ms = (time.perf_counter() - start) * 1e3
    inputs = [to_model_dtype(x[None], spec) for x, spec in zip(sample, model.inputs, strict=True)]
    return measure_latency(model, inputs, warmup=5, runs=runs, init_ms=init_ms)
