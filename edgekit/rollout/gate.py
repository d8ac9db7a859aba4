"""The default gate: each board of a wave is judged on what it measured, paired with itself.

A board passes when, over ``windows`` reports from the new bundle (the first ones after it was
sent) and its last ``windows`` reports from its previous bundle (before it was sent):

- it neither refused the bundle nor rolled back from it;
- the median of its p50s on the new bundle is at most ``p50_ratio`` times the median on its
  previous bundle: the same board against itself, so boards of different speed compare fairly;
- its median on-device accuracy on the eval sample is within the accuracy budget (the profile's
  ``max_accuracy_drop_pt`` unless the gate says otherwise) of the build's figure for that sample,
  and of its own accuracy on its previous bundle (top-1 and agreement, in points).

A board with fewer reports than that on either bundle is not passed: on the new one it is
waiting (until the wave's timeout), on the previous one it fails, as there is nothing to
compare with. A wave passes when every board it sent to is judged, at least one passed, and no
more than ``max_failures`` failed; boards offline when it was sent are deferred, not judged.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import Field

from edgekit.rollout.plan import GatePolicy
from edgekit.rollout.states import Verdict
from edgekit.values import Frozen
from edgekit.vocab import MetricName

# Metrics whose values are percent, so a budget in points applies to them.
_POINTS = {MetricName.TOP1.value, MetricName.AGREEMENT.value}


@dataclass(frozen=True, slots=True)
class Window:
    """What one report measured, as far as the gate looks."""

    p50_ms: float
    accuracy: float | None
    metric: str | None


@dataclass(frozen=True, slots=True)
class BoardEvidence:
    """Everything known about one board of a wave."""

    device_id: str
    deferred: bool
    failure: str | None  # why it refused or rolled back, when it did
    new: Sequence[Window]  # on the new bundle since it was sent, oldest first
    previous: Sequence[Window]  # on its previous bundle before that, newest first
    build_accuracy: float | None  # the build's figure on the bundle's eval sample
    build_metric: str | None


Figure = Annotated[float, Field(allow_inf_nan=False)] | None


class BoardFigures(Frozen):
    """One board's figures and verdict in a wave's gate."""

    device_id: str
    verdict: Verdict
    reason: str = ""
    windows_new: int = 0
    windows_previous: int = 0
    p50_new_ms: Figure = None
    p50_previous_ms: Figure = None
    p50_ratio: Figure = None
    accuracy_new: Figure = None
    accuracy_previous: Figure = None
    accuracy_build: Figure = None
    metric: str | None = None


class WaveVerdict(Frozen):
    """A wave's gate: the policy it was judged by, each board, and the outcome."""

    wave: int
    label: str
    passed: bool
    reason: str
    windows: int
    p50_ratio_limit: float
    accuracy_budget_pt: float
    max_failures: int
    boards: tuple[BoardFigures, ...]
    decided_at: datetime


def judge_board(board: BoardEvidence, policy: GatePolicy, *, budget_pt: float) -> BoardFigures:
    """The verdict on one board, with the figures it rests on."""
    if board.deferred and board.failure is None and not board.new:
        why = "offline when sent; it gets the bundle when it returns"
        return BoardFigures(device_id=board.device_id, verdict=Verdict.DEFERRED, reason=why)
    if board.failure is not None:
        return BoardFigures(device_id=board.device_id, verdict=Verdict.FAIL, reason=board.failure)
    n = policy.windows
    new, previous = list(board.new)[:n], list(board.previous)[:n]
    figures = _figures(board, new, previous)
    if len(new) < n:
        return figures.model_copy(update={
            "verdict": Verdict.WAITING, "reason": f"{len(new)} of {n} window(s) on the new bundle",
        })  # fmt: skip
    problems = _latency_problems(figures, n, policy.p50_ratio)
    problems += _accuracy_problems(figures, budget_pt)
    verdict = Verdict.FAIL if problems else Verdict.PASS
    return figures.model_copy(update={"verdict": verdict, "reason": "; ".join(problems)})


def _figures(board: BoardEvidence, new: list[Window], previous: list[Window]) -> BoardFigures:
    p50_new = _median([w.p50_ms for w in new])
    p50_previous = _median([w.p50_ms for w in previous])
    ratio = p50_new / p50_previous if p50_new is not None and p50_previous else None
    metric = next((w.metric for w in new if w.metric), board.build_metric)
    same = [w.accuracy for w in previous if w.metric == metric]
    return BoardFigures(
        device_id=board.device_id, verdict=Verdict.WAITING,
        windows_new=len(new), windows_previous=len(previous),
        p50_new_ms=p50_new, p50_previous_ms=p50_previous, p50_ratio=ratio,
        accuracy_new=_median([w.accuracy for w in new]),
        accuracy_previous=_median(same) if len(same) == len(previous) else None,
        accuracy_build=board.build_accuracy if board.build_metric == metric else None,
        metric=metric,
    )  # fmt: skip


def _latency_problems(figures: BoardFigures, windows: int, limit: float) -> list[str]:
    if figures.windows_previous < windows or figures.p50_ratio is None:
        return [
            f"{figures.windows_previous} of {windows} window(s) on its previous bundle: "
            "no p50 to compare with"
        ]
    if figures.p50_ratio > limit:
        return [
            f"p50 {figures.p50_new_ms:.4g} ms is {figures.p50_ratio:.2f}x its "
            f"{figures.p50_previous_ms:.4g} ms on the previous bundle (at most {limit:g}x)"
        ]
    return []


def _accuracy_problems(figures: BoardFigures, budget_pt: float) -> list[str]:
    accuracy = figures.accuracy_new
    if accuracy is None or figures.metric not in _POINTS:
        return []  # nothing measured in points to hold against the budget
    problems = []
    for label, reference in (("the build's", figures.accuracy_build),
                             ("its previous bundle's", figures.accuracy_previous)):  # fmt: skip
        if reference is not None and accuracy < reference - budget_pt:
            problems.append(
                f"{figures.metric} {accuracy:.2f}% is {reference - accuracy:.2f} pt below "
                f"{label} {reference:.2f}% (budget {budget_pt:g} pt)"
            )
    return problems


def decide_wave(
    boards: Sequence[BoardFigures], policy: GatePolicy, *, timed_out: bool
) -> tuple[bool, str] | None:
    """(passed, why) once the wave can be decided, None while it waits for windows."""
    waiting = [b for b in boards if b.verdict is Verdict.WAITING]
    failed = [b for b in boards if b.verdict is Verdict.FAIL]
    if waiting and not timed_out:
        return None
    judged = [b for b in boards if b.verdict in (Verdict.PASS, Verdict.FAIL)]
    missing = len(waiting)
    if len(failed) + missing > policy.max_failures:
        first = [*failed, *waiting][0]
        late = f", {missing} without enough windows in {policy.timeout_s:g} s" if missing else ""
        return False, (
            f"{len(failed)} board(s) failed the gate{late}; {first.device_id}: {first.reason}"
        )
    if not any(b.verdict is Verdict.PASS for b in judged):
        return False, "no board of the wave was online to be judged"
    deferred = sum(b.verdict is Verdict.DEFERRED for b in boards)
    tail = f"; {deferred} offline board(s) get it when they return" if deferred else ""
    return True, f"{len(judged) - len(failed)} of {len(judged)} board(s) passed{tail}"


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known and len(known) == len(values) else None
