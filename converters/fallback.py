"""Accuracy-aware fallback: when int8 misses the accuracy budget, keep the fewest layers float.

Layers are ranked by the signal they lose when quantized (per-layer error against fp32 on the
eval data, from the format's exporter); then the k worst are kept float for growing k until the
budget holds. If no mix meets it, the best one found is returned and the build exits 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgekit.converters.formats import Exporter, LayerCost, Quantized
from edgekit.datasets import LabelledData
from edgekit.figures import AccuracyFigures
from edgekit.profiles import Build
from edgekit.progress import Progress, SilentProgress


@dataclass(frozen=True)
class FallbackStep:
    """One mix tried: which layers stayed float and what it cost."""

    kept_float: tuple[str, ...]
    drop_pt: float | None
    within_budget: bool


@dataclass(frozen=True)
class FallbackOutcome:
    """The chosen artifact, its accuracy, and how it was found."""

    quantized: Quantized
    accuracy: AccuracyFigures
    ranking: tuple[LayerCost, ...]
    steps: tuple[FallbackStep, ...]
    met: bool
    plain_drop_pt: float | None  # what plain int8 lost, before any layer was kept float


def ladder(count: int) -> list[int]:
    """How many layers to keep float, try by try: 1, 2, 3, 4, 6, 8, 12, 16, ... up to ``count``."""
    sizes: list[int] = []
    k = 1
    while k < count:
        sizes.append(k)
        k = k + 1 if k < 4 else k + k // 2
    if count:
        sizes.append(count)
    return sizes


def keep_layers_float(
    exporter: Exporter,
    build: Build,
    calibration: LabelledData | None,
    *,
    first: Quantized,
    first_accuracy: AccuracyFigures,
    sample: LabelledData,
    evaluate: Callable[[bytes], AccuracyFigures],
    budget_pt: float,
    progress: Progress | None = None,
) -> FallbackOutcome:
    """Keep the layers that cost most in float, fewest first, until the drop is within budget."""
    progress = progress or SilentProgress()
    ranking = tuple(c for c in exporter.rank_layers(first.content, sample, progress=progress)
                    if c.loss_db > 0)  # fmt: skip
    best, best_acc = first, first_accuracy
    steps: list[FallbackStep] = []
    for k in ladder(len(ranking)):
        names = tuple(dict.fromkeys(node for cost in ranking[:k] for node in cost.nodes))
        candidate = exporter.quantize(build, calibration, keep_float=names, progress=progress)
        accuracy = evaluate(candidate.content)
        ok = accuracy.drop_pt is not None and accuracy.drop_pt <= budget_pt
        steps.append(FallbackStep(kept_float=names, drop_pt=accuracy.drop_pt, within_budget=ok))
        if ok:
            return FallbackOutcome(
                candidate, accuracy, ranking, tuple(steps), met=True,
                plain_drop_pt=first_accuracy.drop_pt,
            )  # fmt: skip
        if (accuracy.drop_pt or 0.0) < (best_acc.drop_pt or 0.0):
            best, best_acc = candidate, accuracy
    return FallbackOutcome(
        best, best_acc, ranking, tuple(steps), met=False, plain_drop_pt=first_accuracy.drop_pt
    )
