"""Validation of artifacts with the real interpreter: accuracy against fp32 and host latency."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgekit import metrics
from edgekit.datasets import LabelledData
from edgekit.progress import Progress, SilentProgress
from edgekit.runtime.backend import open_backend
from edgekit.runtime.benchmark import measure_latency
from edgekit.runtime.predict import Predictor
from edgekit.runtime.quantization import to_model_dtype
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
    pruned_fp32: float | None = None  # the pruned model before quantization, when pruned


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
    pruned_fp32_model: bytes | None = None,
    threads: int = 1,
    progress: Progress | None = None,
) -> Comparison:
    """Run the fp32 baseline, the final artifact (and the pruned fp32 model) on ``data``."""
    progress = progress or SilentProgress()
    models = {"fp32": fp32_model, "quantized": quant_model}
    if pruned_fp32_model is not None:
        models["pruned fp32"] = pruned_fp32_model
    outputs = {}
    for label, content in models.items():
        predictor = Predictor(open_backend("litert", content, threads=threads), batch_size=64)
        with progress.task(f"Evaluating {label}", total=len(data)) as task:
            outputs[label] = predictor.predict(data.x, task=task)
    ref, test, pruned = outputs["fp32"], outputs["quantized"], outputs.get("pruned fp32")
    if metrics.is_classifier_output(ref) and data.y is not None:
        labels = data.y
        fp32, quant = metrics.top1(ref, labels), metrics.top1(test, labels)
        mid = None if pruned is None else metrics.top1(pruned, labels)
        acc = Accuracy("top1", fp32, quant, fp32 - quant, len(data), data_label, mid)
    elif metrics.is_classifier_output(ref):
        agree = metrics.agreement(test, ref)
        mid = None if pruned is None else metrics.agreement(pruned, ref)
        acc = Accuracy("agreement", 100.0, agree, 100.0 - agree, len(data), data_label, mid)
    else:
        sqnr = metrics.sqnr_db(ref, test)
        mid = None if pruned is None else metrics.sqnr_db(ref, pruned)
        acc = Accuracy("sqnr_db", None, sqnr, None, len(data), data_label, mid)
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
