"""Validation of artifacts with the real interpreter: accuracy against fp32 and host latency."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
from edgekit.runtime.backend import open_backend
from edgekit.runtime.benchmark import measure_latency
from edgekit.runtime.predict import Predictor
from edgekit.runtime.quantization import to_model_dtype

from edgekit import metrics
from edgekit.datasets import LabelledData
from edgekit.progress import Progress, SilentProgress
from edgekit.schema import LatencyStats

Metric = Literal["top1", "agreement", "sqnr_db"]


@dataclass(frozen=True)
class Accuracy:
    """How the quantized artifact compares with the fp32 one on the same data."""

    metric: Metric
    fp32: float | None
    quantized: float
    drop_pt: float | None  # percentage points lost; None for SQNR, which has no "drop"
    samples: int
    data: str  # which data it was measured on


@dataclass(frozen=True)
class Comparison:
    """Accuracy plus the fp32 outputs (kept as the eval sample's reference)."""

    accuracy: Accuracy
    fp32_outputs: np.ndarray


def compare(
    fp32_model: bytes,
    quant_model: bytes,
    data: LabelledData,
    *,
    data_label: str,
    threads: int = 1,
    progress: Progress | None = None,
) -> Comparison:
    """Run both artifacts on ``data`` with LiteRT and compare them."""
    progress = progress or SilentProgress()
    outputs = []
    for label, content in (("fp32", fp32_model), ("quantized", quant_model)):
        predictor = Predictor(open_backend("litert", content, threads=threads), batch_size=64)
        with progress.task(f"Evaluating {label}", total=len(data)) as task:
            outputs.append(predictor.predict(data.x, task=task))
    ref, test = outputs
    if metrics.is_classifier_output(ref) and data.y is not None:
        fp32, quant = metrics.top1(ref, data.y), metrics.top1(test, data.y)
        acc = Accuracy("top1", fp32, quant, fp32 - quant, len(data), data_label)
    elif metrics.is_classifier_output(ref):
        agree = metrics.agreement(test, ref)
        acc = Accuracy("agreement", 100.0, agree, 100.0 - agree, len(data), data_label)
    else:
        acc = Accuracy("sqnr_db", None, metrics.sqnr_db(ref, test), None, len(data), data_label)
    return Comparison(accuracy=acc, fp32_outputs=ref)


def host_latency(
    content: bytes, sample: np.ndarray, *, threads: int, runs: int = 50
) -> LatencyStats:
    """p50 and friends of one-sample inference on this machine, with LiteRT."""
    start = time.perf_counter()
    backend = open_backend("litert", content, threads=threads)
    init_ms = (time.perf_counter() - start) * 1e3
    x = to_model_dtype(sample[None], backend.inputs[0])
    return measure_latency(backend, [x], warmup=5, runs=runs, init_ms=init_ms)
