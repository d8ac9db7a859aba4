"""Accuracy figures shared by the build (validation) and the board (on-device accuracy)."""

from __future__ import annotations

import numpy as np


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
    if noise == 0.0:
        return float("inf")
    return 10.0 * float(np.log10(max(signal, 1e-30) / noise))
