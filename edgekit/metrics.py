"""Accuracy figures shared by the build (validation) and the board (on-device accuracy)."""

from __future__ import annotations

import numpy as np

from edgekit.vocab import MetricName

# Beyond any real quantization error (float32 rounding alone is ~140 dB).
SQNR_CAP_DB = 200.0


def is_classifier_output(outputs: np.ndarray) -> bool:
    """True for (batch, classes) scores with at least two classes."""
    return outputs.ndim == 2 and outputs.shape[1] >= 2


def top1(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent of (batch, classes) scores against integer labels."""
    return float(np.mean(np.argmax(outputs, axis=1) == labels) * 100.0)


def agreement(outputs: np.ndarray, reference: np.ndarray) -> float:
    """Percent of samples whose top-1 class matches the reference model's."""
    return top1(outputs, np.argmax(reference, axis=1))


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``test`` against ``reference``, in dB."""
    ref = reference.astype(np.float64)
    noise = float(np.sum((ref - test.astype(np.float64)) ** 2))
    signal = float(np.sum(ref**2))
    # Capped: identical outputs give an infinite ratio, which JSON (and reports) cannot carry.
    if noise == 0.0:
        return SQNR_CAP_DB
    return min(SQNR_CAP_DB, 10.0 * float(np.log10(max(signal, 1e-30) / noise)))


def score(
    outputs: np.ndarray, *, labels: np.ndarray | None, reference: np.ndarray | None
) -> tuple[MetricName, float] | None:
    """The metric a bundle's eval sample supports, as (name, value): top-1 against labels,
    top-1 agreement with the fp32 reference, or SQNR against it for non-classifiers."""
    if is_classifier_output(outputs) and labels is not None:
        return MetricName.TOP1, top1(outputs, labels)
    if reference is None:
        return None
    if is_classifier_output(outputs):
        return MetricName.AGREEMENT, agreement(outputs, reference)
    return MetricName.SQNR_DB, sqnr_db(reference, outputs)
