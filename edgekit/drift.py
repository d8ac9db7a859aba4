"""Drift summaries: what a model saw and said over a set of inputs, in a few hundred bytes.

A summary holds a histogram of top-1 confidence (10 bins over [0, 1]), a histogram of predicted
classes, and the mean and standard deviation of the inputs per channel. The build computes one on
the bundle's eval sample (the reference, in the manifest); the board computes one per window, for
the eval sample and for watched-folder inputs separately; the fleet report compares them with the
population stability index (:func:`psi`). Summaries add up exactly (:func:`merge`), so the
collector may sum them over any period.

Imports pydantic only; numpy is imported by :func:`summarize`, which the board and the build call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, model_validator

from edgekit.values import FiniteInJson, Frozen

if TYPE_CHECKING:
    import numpy as np

CONFIDENCE_BINS = 10
# Wider outputs are folded into this many contiguous groups of classes.
MAX_CLASSES = 1024
# Inputs with more channels are folded into this many contiguous groups of channels.
MAX_CHANNELS = 64
# Outputs whose rows are non-negative and sum to 1 within this are probabilities already
# (int8/uint8 softmax outputs dequantize to sums a few hundredths off 1).
_PROBABILITY_SUM_TOLERANCE = 0.05

Count = Annotated[int, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class DriftSummary(Frozen):
    """Confidence and class histograms and per-channel input statistics over ``samples`` inputs."""

    samples: Annotated[int, Field(ge=1)]
    confidence: Annotated[
        tuple[Count, ...], Field(min_length=CONFIDENCE_BINS, max_length=CONFIDENCE_BINS)
    ]
    classes: Annotated[tuple[Count, ...], Field(min_length=1, max_length=MAX_CLASSES)]
    channel_mean: Annotated[tuple[FiniteInJson, ...], Field(max_length=MAX_CHANNELS)] = ()
    channel_std: Annotated[tuple[NonNegative, ...], Field(max_length=MAX_CHANNELS)] = ()

    @model_validator(mode="after")
    def _consistent(self) -> DriftSummary:
        if sum(self.confidence) != self.samples or sum(self.classes) != self.samples:
            raise ValueError("histogram counts must add up to samples")
        if len(self.channel_mean) != len(self.channel_std):
            raise ValueError("channel_mean and channel_std must have the same length")
        return self


class WindowDrift(Frozen):
    """A report window's summaries, with the bundle's reference so the collector can compare."""

    eval_sample: DriftSummary | None = None
    watched: DriftSummary | None = None
    reference: DriftSummary | None = None


def summarize(
    inputs: np.ndarray | None, outputs: np.ndarray, *, channel_axis: int | None = -1
) -> DriftSummary:
    """The summary of a batch: ``outputs`` (batch first) and the float ``inputs`` that gave them.

    Outputs that are not probabilities already (logits) go through a softmax; a single output
    column is read as a binary probability (a sigmoid first when it is outside [0, 1]).
    ``channel_axis`` is the inputs' channel axis (None: no per-channel statistics).
    """
    import numpy as np

    out = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    if len(out) == 0:
        raise ValueError("a drift summary needs at least one sample")
    confidence, predicted, width = _top1(out)
    bins = np.minimum((confidence * CONFIDENCE_BINS).astype(np.int64), CONFIDENCE_BINS - 1)
    conf_counts = np.bincount(bins, minlength=CONFIDENCE_BINS)
    groups = min(width, MAX_CLASSES)
    class_counts = np.bincount(predicted * groups // width, minlength=groups)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    if inputs is not None and channel_axis is not None:
        mean, std = _channel_stats(np.asarray(inputs), channel_axis)
    return DriftSummary(
        samples=len(out),
        confidence=tuple(int(c) for c in conf_counts),
        classes=tuple(int(c) for c in class_counts),
        channel_mean=mean,
        channel_std=std,
    )


def channel_axis_of(shape: Sequence[int | None]) -> int | None:
    """The channel axis of a model input of ``shape`` (batch first): for images the axis of 1 to
    4 channels (last preferred, else the first after the batch); otherwise the last axis."""
    if len(shape) < 2:
        return None
    if len(shape) == 4:
        last, first = shape[-1], shape[1]
        if last is not None and last <= 4:
            return -1
        if first is not None and first <= 4:
            return 1
    return -1


def merge(summaries: Sequence[DriftSummary]) -> DriftSummary:
    """One summary of everything ``summaries`` counted (exact: counts add, moments combine)."""
    if not summaries:
        raise ValueError("nothing to merge")
    first = summaries[0]
    n = sum(s.samples for s in summaries)
    width = max(len(s.classes) for s in summaries)
    classes = [0] * width
    for s in summaries:
        for i, c in enumerate(s.classes):
            classes[i] += c
    channels = len(first.channel_mean)
    same = all(len(s.channel_mean) == channels for s in summaries)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    if same and channels:
        m = [sum(s.samples * s.channel_mean[c] for s in summaries) / n for c in range(channels)]
        sq = [
            sum(s.samples * (s.channel_std[c] ** 2 + s.channel_mean[c] ** 2) for s in summaries) / n
            for c in range(channels)
        ]
        mean = tuple(m)
        std = tuple(math.sqrt(max(q - mu * mu, 0.0)) for q, mu in zip(sq, m, strict=True))
    return DriftSummary(
        samples=n,
        confidence=tuple(sum(s.confidence[i] for s in summaries) for i in range(CONFIDENCE_BINS)),
        classes=tuple(classes),
        channel_mean=mean,
        channel_std=std,
    )


def psi(observed: Sequence[float], reference: Sequence[float]) -> float:
    """Population stability index of two histograms over the same bins (counts or proportions).

    Half a count is added to every bin (Jeffreys), so a bin empty on one side gives a large but
    finite term. Conventionally < 0.1 is stable, 0.1 to 0.25 a moderate shift, > 0.25 a large one.
    """
    if len(observed) != len(reference):
        raise ValueError("histograms over different bins")
    k = len(observed)
    n_obs, n_ref = sum(observed), sum(reference)
    if n_obs <= 0 or n_ref <= 0:
        return 0.0
    total = 0.0
    for o, r in zip(observed, reference, strict=True):
        p = (o + 0.5) / (n_obs + 0.5 * k)
        q = (r + 0.5) / (n_ref + 0.5 * k)
        total += (p - q) * math.log(p / q)
    return total


def psi_noise(observed: Sequence[float], reference: Sequence[float]) -> float:
    """The PSI two samples of these sizes from one population give on average (about
    (bins - 1) * (1/n + 1/m), the bins counted where either side has data)."""
    n_obs, n_ref = sum(observed), sum(reference)
    if n_obs <= 0 or n_ref <= 0:
        return math.inf
    bins = sum(1 for o, r in zip(observed, reference, strict=True) if o or r)
    return max(bins - 1, 1) * (1 / n_obs + 1 / n_ref)


def fold(counts: Sequence[int], groups: int) -> tuple[int, ...]:
    """``counts`` over ``groups`` contiguous groups of bins (the same bins when fewer)."""
    width = len(counts)
    if width <= groups:
        return (*counts, *([0] * (groups - width)))
    folded = [0] * groups
    for i, c in enumerate(counts):
        folded[i * groups // width] += c
    return tuple(folded)


def _top1(out: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Top-1 confidence and class of each row, and how many classes the rows have."""
    import numpy as np

    if out.shape[1] == 1:
        p = out[:, 0]
        if p.min() < 0 or p.max() > 1:
            p = 1 / (1 + np.exp(-np.clip(p, -60, 60)))
        predicted = (p >= 0.5).astype(np.int64)
        return np.where(predicted == 1, p, 1 - p), predicted, 2
    sums = out.sum(axis=1)
    if out.min() < 0 or np.abs(sums - 1).max() > _PROBABILITY_SUM_TOLERANCE:
        shifted = np.exp(out - out.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
    else:
        probs = out / np.maximum(sums[:, None], 1e-12)
    predicted = probs.argmax(axis=1)
    return np.clip(probs.max(axis=1), 0, 1), predicted.astype(np.int64), out.shape[1]


# Bytes of float64 summed at a time (a 224x224x3 image is 1.2 MB of them): the board's memory
# figure should not grow with its eval sample.
_CHUNK_BYTES = 4 * 2**20


def _channel_stats(x: np.ndarray, axis: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std per channel (channels grouped above MAX_CHANNELS), summed in float64 a few
    samples at a time, so a sample of large images costs no copy of itself."""
    import numpy as np

    if x.ndim < 2:
        return (), ()
    channels = x.shape[axis]
    groups = min(channels, MAX_CHANNELS)
    # Grouped channels pool their values: the mean and spread of the group as one channel.
    edges = [-(-g * channels // groups) for g in range(groups + 1)]  # channel c in group c*G//C
    count = np.zeros(groups)
    total = np.zeros(groups)
    squares = np.zeros(groups)
    chunk = max(1, _CHUNK_BYTES // max(1, 8 * x[0].size)) if len(x) else 1
    for start in range(0, len(x), chunk):
        block = np.moveaxis(np.asarray(x[start : start + chunk], dtype=np.float64), axis, -1)
        if not np.isfinite(block).all():
            return (), ()
        for g in range(groups):
            part = block[..., edges[g] : edges[g + 1]]
            count[g] += part.size
            total[g] += part.sum()
            squares[g] += np.square(part).sum()
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
