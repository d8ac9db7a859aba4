"""Adding cells up: exact totals of report windows over buckets, devices or bundles."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from edgekit.collector.snapshot import Cell, DeviceBundleRow, utc_time

if TYPE_CHECKING:
    from edgekit.collector.snapshot import FleetSnapshot


@dataclass(slots=True)
class Totals:
    """Sums, extremes and counts of any set of cells; the means derive from them."""

    windows: int = 0
    sum_p50_ms: float = 0.0
    sum_p90_ms: float = 0.0
    sum_p99_ms: float = 0.0
    max_p99_ms: float = 0.0
    max_rss_mb: float = 0.0
    init_windows: int = 0
    sum_init_ms: float = 0.0
    first_windows: int = 0
    sum_first_ms: float = 0.0
    accuracy_weighted: float = 0.0
    accuracy_samples: int = 0
    first_s: float | None = None
    last_s: float | None = None
    last_id: int = -1

    @classmethod
    def of(cls, cells: Iterable[Cell]) -> Totals:
        """The totals of ``cells``."""
        totals = cls()
        for cell in cells:
            totals.add(cell)
        return totals

    def add(self, c: Cell) -> None:
        """Count one more cell."""
        self.windows += c.windows
        self.sum_p50_ms += c.sum_p50_ms
        self.sum_p90_ms += c.sum_p90_ms
        self.sum_p99_ms += c.sum_p99_ms
        self.max_p99_ms = max(self.max_p99_ms, c.max_p99_ms)
        self.max_rss_mb = max(self.max_rss_mb, c.max_rss_mb)
        self.init_windows += c.init_windows
        self.sum_init_ms += c.sum_init_ms
        self.first_windows += c.first_windows
        self.sum_first_ms += c.sum_first_ms
        if c.accuracy_samples:
            self.accuracy_weighted += c.accuracy_weighted or 0.0
            self.accuracy_samples += c.accuracy_samples
        self.first_s = c.first_s if self.first_s is None else min(self.first_s, c.first_s)
        self.last_s = c.last_s if self.last_s is None else max(self.last_s, c.last_s)
        self.last_id = max(self.last_id, c.last_id)

    @classmethod
    def merged(cls, parts: Iterable[Totals]) -> Totals:
        """The totals of every cell ``parts`` counted (exact: sums add, extremes combine)."""
        totals = cls()
        for part in parts:
            totals.merge(part)
        return totals

    def merge(self, o: Totals) -> None:
        """Count every cell ``o`` counted as well."""
        if not o.windows:
            return
        self.windows += o.windows
        self.sum_p50_ms += o.sum_p50_ms
        self.sum_p90_ms += o.sum_p90_ms
        self.sum_p99_ms += o.sum_p99_ms
        self.max_p99_ms = max(self.max_p99_ms, o.max_p99_ms)
        self.max_rss_mb = max(self.max_rss_mb, o.max_rss_mb)
        self.init_windows += o.init_windows
        self.sum_init_ms += o.sum_init_ms
        self.first_windows += o.first_windows
        self.sum_first_ms += o.sum_first_ms
        self.accuracy_weighted += o.accuracy_weighted
        self.accuracy_samples += o.accuracy_samples
        self.first_s = _least(self.first_s, o.first_s)
        self.last_s = _most(self.last_s, o.last_s)
        self.last_id = max(self.last_id, o.last_id)

    @property
    def first_at(self) -> datetime | None:
        """The first window's start."""
        return None if self.first_s is None else utc_time(self.first_s)

    @property
    def last_at(self) -> datetime | None:
        """The last window's start."""
        return None if self.last_s is None else utc_time(self.last_s)

    def mean(self, total: float) -> float:
        """``total`` over the windows counted."""
        return total / self.windows if self.windows else math.nan

    @property
    def p50_ms(self) -> float:
        """Mean of the windows' p50."""
        return self.mean(self.sum_p50_ms)

    @property
    def accuracy(self) -> float | None:
        """Accuracy over every sample scored (windows weigh by their samples)."""
        if not self.accuracy_samples:
            return None
        return self.accuracy_weighted / self.accuracy_samples

    @property
    def init_ms(self) -> float | None:
        """Mean load time over the windows that measured it."""
        return self.sum_init_ms / self.init_windows if self.init_windows else None

    @property
    def first_ms(self) -> float | None:
        """Mean first (cold) inference over the windows that measured it."""
        return self.sum_first_ms / self.first_windows if self.first_windows else None


def _least(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _most(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def pair_totals(cells: Iterable[Cell]) -> dict[tuple[str, str], Totals]:
    """Per (device, bundle digest): its cells of every bucket added up."""
    groups: dict[tuple[str, str], Totals] = {}
    for cell in cells:
        key = (cell.device_id, cell.bundle_digest)
        totals = groups.get(key)
        if totals is None:
            groups[key] = totals = Totals()
        totals.add(cell)
    return groups


def device_bundle_rows(snapshot: FleetSnapshot) -> tuple[DeviceBundleRow, ...]:
    """One row per device and bundle: its cells over every bucket added up."""
    groups = pair_totals(snapshot.cells)
    bundles = {b.bundle_digest: b for b in snapshot.bundles}
    latest = {(x.device_id, x.bundle_digest): x for x in snapshot.latest}
    rows = []
    for (device, digest), t in groups.items():
        b, last = bundles[digest], latest[(device, digest)]
        rows.append(
            DeviceBundleRow(
                device_id=device,
                bundle_digest=digest,
                bundle_id=b.bundle_id,
                profile=b.profile,
                backend=last.backend,
                reports=t.windows,
                last_received_at=last.received_at,
                p50_ms=t.p50_ms,
                p90_ms=t.mean(t.sum_p90_ms),
                p99_ms=t.mean(t.sum_p99_ms),
                max_p99_ms=t.max_p99_ms,
                peak_rss_mb=t.max_rss_mb,
                accuracy_metric=last.accuracy_metric,
                accuracy=t.accuracy,
                accuracy_samples=t.accuracy_samples or None,
                est_latency_ms=b.est_latency_ms,
                model_bytes=b.model_bytes,
                build_metric=b.metric,
                build_fp32=b.fp32,
                build_quantized=b.quantized,
            )
        )
    rows.sort(key=lambda r: (r.device_id, r.profile, r.bundle_id))
    return tuple(rows)
