"""Timing several models against each other on one machine, fairly.

Comparing candidates measured one after the other on a shared or thermally throttled machine
compares the machine's moods as much as the models. So the models take turns: round by round,
each runs a short burst, in an order that rotates, until every median is known to within a few
percent (or the time budget runs out, and the width says how sure it is).

Used by the build (which candidate to ship) and by the board (which candidate of a bundle runs
fastest here).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edgekit.progress import Task
from edgekit.runtime.backend import Backend
from edgekit.runtime.benchmark import latency_stats
from edgekit.schema import LatencyStats

# 95 % confidence interval of a median from order statistics: ranks n/2 -/+ 0.98 sqrt(n).
_Z_MEDIAN = 0.98
# Medians closer than this (relative) are not yet told apart, however narrow their intervals.
CLOSE = 0.02
# The precision a race's first round asks of a median: enough to tell the contenders.
FIRST_ROUND_CI = 0.05


@dataclass(frozen=True)
class Timing:
    """One model's latency from a side-by-side run."""

    stats: LatencyStats
    # Half-width of the 95 % confidence interval of the median, in ms.
    p50_ci_ms: float

    @property
    def p50_ms(self) -> float:
        """Median latency in ms."""
        return self.stats.p50_ms

    @property
    def relative_ci(self) -> float:
        """The median's confidence half-width as a fraction of the median."""
        return self.p50_ci_ms / self.stats.p50_ms if self.stats.p50_ms > 0 else math.inf


def median_ci_ms(times_ms: Sequence[float]) -> float:
    """Half-width of the distribution-free 95 % confidence interval of the median."""
    ordered = np.sort(np.asarray(times_ms, dtype=np.float64))
    n = len(ordered)
    if n < 5:
        return math.inf
    half = _Z_MEDIAN * math.sqrt(n)
    low = ordered[max(0, math.floor(n / 2 - half))]
    high = ordered[min(n - 1, math.ceil(n / 2 + half))]
    return float(high - low) / 2


def time_side_by_side(
    models: Sequence[Backend],
    inputs: Sequence[Sequence[np.ndarray]],
    *,
    warmup: int = 5,
    min_runs: int = 20,
    max_runs: int = 2000,
    target_ci: float = 0.02,
    max_seconds: float = 20.0,
    burst_ms: float = 50.0,
    task: Task | None = None,
    clock: Callable[[], float] = time.perf_counter,
    eligible: Sequence[bool] | None = None,
) -> list[Timing]:
    """Time every model on its inputs (in its own dtypes), taking turns; one Timing each.

    Stops when every model has ``min_runs`` runs and its median is known to ``target_ci``
    (relative 95 % half-width), or when ``max_seconds`` are spent, or at ``max_runs``. Given
    ``eligible`` (which models may win, see :func:`contenders`), a model that is clearly not a
    contender needs no more precision than that.
    """
    if len(models) != len(inputs):
        raise ValueError("one input list per model")
    times: list[list[float]] = [[] for _ in models]
    firsts: list[float] = []
    for model, feed in zip(models, inputs, strict=True):
        start = clock()
        model.invoke(feed)
        firsts.append((clock() - start) * 1e3)
        for _ in range(warmup):
            model.invoke(feed)
    began = clock()
    turn = 0
    while True:
        order = [(turn + k) % len(models) for k in range(len(models))]
        for i in order:
            _burst(models[i], inputs[i], times[i], burst_ms=burst_ms, clock=clock)
        turn += 1
        if task is not None:
            task.advance()
        enough = all(len(t) >= min_runs for t in times)
        settled = enough and _settled(times, target_ci, eligible)
        out_of_time = clock() - began >= max_seconds
        if settled or (enough and out_of_time) or all(len(t) >= max_runs for t in times):
            break
    return [
        Timing(latency_stats(t, first_ms=first), median_ci_ms(t))
        for t, first in zip(times, firsts, strict=True)
    ]


def _settled(
    times: Sequence[Sequence[float]], target_ci: float, eligible: Sequence[bool] | None
) -> bool:
    """Every median known to ``target_ci``, or (given ``eligible``) clearly not a contender."""
    cis = [median_ci_ms(t) for t in times]
    medians = [float(np.median(t)) for t in times]
    precise = [ci <= target_ci * m for ci, m in zip(cis, medians, strict=True)]
    if eligible is None or all(precise):
        return all(precise)
    now = [Timing(latency_stats(list(t)), ci) for t, ci in zip(times, cis, strict=True)]
    close = set(contenders(now, eligible))
    return all(ok or i not in close for i, ok in enumerate(precise))


def _burst(
    model: Backend,
    feed: Sequence[np.ndarray],
    into: list[float],
    *,
    burst_ms: float,
    clock: Callable[[], float],
) -> None:
    """Runs of one model for about ``burst_ms`` (at least one), each timed on its own."""
    spent = 0.0
    while True:
        t0 = clock()
        model.invoke(feed)
        elapsed = (clock() - t0) * 1e3
        into.append(elapsed)
        spent += elapsed
        if spent >= burst_ms:
            return


def race(
    models: Sequence[Backend],
    inputs: Sequence[Sequence[np.ndarray]],
    *,
    eligible: Sequence[bool] | None = None,
    seconds_per_model: float = 2.0,
    min_runs: int = 20,
    task: Task | None = None,
) -> list[Timing]:
    """Every model timed side by side, then the contenders again among themselves alone.

    A first round with every model tells the clearly slower ones apart (it stops once every
    median is known to 5 % or is clearly out, within half the time); with many models loaded
    each one's median is noisier too (each session's threads and caches disturb the next). The
    contenders are the ``eligible`` models (default: all) whose median's interval reaches the
    fastest eligible one's; a second round times only them, to 2 %, with ``seconds_per_model``
    each, and their figures replace the first round's. The others keep their first-round figures
    (they were clearly slower). One contender, or every model a contender: one round.
    """
    ok = list(eligible) if eligible is not None else [True] * len(models)
    # The first round only tells the contenders from the rest: half the time, 5 % precision, and
    # none at all for a model already clearly out.
    first = time_side_by_side(models, inputs, min_runs=min_runs, target_ci=FIRST_ROUND_CI,
                              max_seconds=seconds_per_model * len(models) / 2, task=task,
                              eligible=ok)  # fmt: skip
    close = contenders(first, ok)
    if len(close) < 2 or len(close) == len(models):
        return first
    second = time_side_by_side(
        [models[i] for i in close],
        [inputs[i] for i in close],
        min_runs=min_runs,
        max_seconds=seconds_per_model * len(close),
        task=task,
    )
    out = list(first)
    for i, timing in zip(close, second, strict=True):
        out[i] = timing
    return out


def contenders(timings: Sequence[Timing], eligible: Sequence[bool]) -> list[int]:
    """Indices of the eligible timings whose median's 95 % interval reaches the fastest eligible
    one's, or comes within 2 % of it (those a longer look must tell apart)."""
    candidates = [i for i, ok in enumerate(eligible) if ok]
    if not candidates:
        return []
    best = min(candidates, key=lambda i: timings[i].p50_ms)
    fastest = timings[best]
    reach = fastest.p50_ms + max(fastest.p50_ci_ms, CLOSE * fastest.p50_ms)
    return [i for i in candidates if timings[i].p50_ms - timings[i].p50_ci_ms <= reach]
