"""Figures over time: cells added up per time bucket (exact means per bucket, no sampling)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edgekit.collector.cells import Totals
from edgekit.collector.snapshot import Cell, TimeAxis


@dataclass(frozen=True, slots=True)
class Series:
    """One bundle's windows over time (of one board, or of the fleet), one point per bucket."""

    bundle_digest: str
    merge: int  # the snapshot's buckets per point
    buckets: tuple[int, ...]  # point i covers buckets buckets[i] * merge to (+ merge - 1)
    t_ms: tuple[int, ...]  # middle of each point's buckets, ms since the epoch
    windows: tuple[int, ...]
    p50_ms: tuple[float, ...]
    p90_ms: tuple[float, ...]
    p99_ms: tuple[float, ...]
    max_p99_ms: tuple[float, ...]
    accuracy: tuple[float | None, ...]
    rss_mb: tuple[float, ...]  # peak RSS over the bucket's windows
    init_ms: tuple[float | None, ...]
    first_ms: tuple[float | None, ...]


def series(digest: str, cells: Iterable[Cell], axis: TimeAxis, *, merge: int = 1) -> Series:
    """The series of ``cells`` (all of one bundle); ``merge`` adjacent buckets become one."""
    buckets: dict[int, Totals] = {}
    for cell in cells:
        buckets.setdefault(cell.bucket // merge, Totals()).add(cell)
    order = sorted(buckets)
    rows = [buckets[b] for b in order]
    width = axis.width_s * merge
    start_ms = axis.start.timestamp() * 1e3
    return Series(
        bundle_digest=digest,
        merge=merge,
        buckets=tuple(order),
        t_ms=tuple(round(start_ms + (b + 0.5) * width * 1e3) for b in order),
        windows=tuple(t.windows for t in rows),
        p50_ms=tuple(t.p50_ms for t in rows),
        p90_ms=tuple(t.mean(t.sum_p90_ms) for t in rows),
        p99_ms=tuple(t.mean(t.sum_p99_ms) for t in rows),
        max_p99_ms=tuple(t.max_p99_ms for t in rows),
        accuracy=tuple(t.accuracy for t in rows),
        rss_mb=tuple(t.max_rss_mb for t in rows),
        init_ms=tuple(t.init_ms for t in rows),
        first_ms=tuple(t.first_ms for t in rows),
    )


def by_bundle(cells: Iterable[Cell], axis: TimeAxis, *, merge: int = 1) -> tuple[Series, ...]:
    """One series per bundle among ``cells``, in order of first appearance in time."""
    groups: dict[str, list[Cell]] = {}
    for cell in sorted(cells, key=lambda c: (c.first_s, c.bundle_digest)):
        groups.setdefault(cell.bundle_digest, []).append(cell)
    return tuple(series(d, group, axis, merge=merge) for d, group in groups.items())
