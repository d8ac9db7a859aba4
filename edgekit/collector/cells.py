"""Adding cells up: exact totals of report windows over buckets, devices or bundles."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from edgekit.collector.snapshot import Cell, DeviceBundleRow

if TYPE_CHECKING:
    from edgekit.collector.snapshot import FleetSnapshot


@dataclass(slots=True)
class Totals:
    """Sums, extremes and counts of any set of cells; the means derive from them."""

    windows: int = 0
    sum_mean_ms: float = 0.0
    sum_p50_ms: float = 0.0
    sum_p50_sq: float = 0.0
    sum_p90_ms: float = 0.0
    sum_p99_ms: float = 0.0
    min_p50_ms: float = math.inf
    max_p99_ms: float = 0.0
    sum_rss_mb: float = 0.0
    max_rss_mb: float = 0.0
    init_windows: int = 0
    sum_init_ms: float = 0.0
    first_windows: int = 0
    sum_first_ms: float = 0.0
    accuracy_weighted: float = 0.0
    accuracy_samples: int = 0
    accuracy_metric: str | None = None
    workload_inputs: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    last_received_at: datetime | None = None
    last_id: int = -1
    backend: str = ""

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
        self.sum_mean_ms += c.sum_mean_ms
        self.sum_p50_ms += c.sum_p50_ms
        self.sum_p50_sq += c.sum_p50_sq
        self.sum_p90_ms += c.sum_p90_ms
        self.sum_p99_ms += c.sum_p99_ms
        self.min_p50_ms = min(self.min_p50_ms, c.min_p50_ms)
        self.max_p99_ms = max(self.max_p99_ms, c.max_p99_ms)
        self.sum_rss_mb += c.sum_rss_mb
        self.max_rss_mb = max(self.max_rss_mb, c.max_rss_mb)
        self.init_windows += c.init_windows
        self.sum_init_ms += c.sum_init_ms
        self.first_windows += c.first_windows
        self.sum_first_ms += c.sum_first_ms
        if c.accuracy_samples:
            self.accuracy_weighted += c.accuracy_weighted or 0.0
            self.accuracy_samples += c.accuracy_samples
            self.accuracy_metric = self.accuracy_metric or c.accuracy_metric
        self.workload_inputs += c.workload_inputs
        self.first_at = c.first_at if self.first_at is None else min(self.first_at, c.first_at)
        self.last_at = c.last_at if self.last_at is None else max(self.last_at, c.last_at)
        if self.last_received_at is None or c.last_received_at > self.last_received_at:
            self.last_received_at = c.last_received_at
        if c.last_id > self.last_id:
            self.last_id, self.backend = c.last_id, c.backend

    def mean(self, total: float) -> float:
        """``total`` over the windows counted."""
        return total / self.windows if self.windows else math.nan

    @property
    def p50_ms(self) -> float:
        """Mean of the windows' p50."""
        return self.mean(self.sum_p50_ms)

    @property
    def p50_std_ms(self) -> float:
        """Standard deviation of the windows' p50 (0 for one window)."""
        if self.windows < 2:
            return 0.0
        var = (self.sum_p50_sq - self.sum_p50_ms**2 / self.windows) / (self.windows - 1)
        return math.sqrt(max(var, 0.0))

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


def device_bundle_rows(snapshot: FleetSnapshot) -> tuple[DeviceBundleRow, ...]:
    """One row per device and bundle: its cells over every bucket added up."""
    groups: dict[tuple[str, str], Totals] = {}
    for cell in snapshot.cells:
        groups.setdefault((cell.device_id, cell.bundle_digest), Totals()).add(cell)
    bundles = {b.bundle_digest: b for b in snapshot.bundles}
    rows = []
    for (device, digest), t in groups.items():
        b = bundles[digest]
        assert t.last_received_at is not None  # a group holds at least one cell
        rows.append(
            DeviceBundleRow(
                device_id=device,
                bundle_digest=digest,
                bundle_id=b.bundle_id,
                profile=b.profile,
                backend=t.backend,
                reports=t.windows,
                last_received_at=t.last_received_at,
                mean_ms=t.mean(t.sum_mean_ms),
                p50_ms=t.p50_ms,
                p90_ms=t.mean(t.sum_p90_ms),
                p99_ms=t.mean(t.sum_p99_ms),
                max_p99_ms=t.max_p99_ms,
                peak_rss_mb=t.max_rss_mb,
                accuracy_metric=t.accuracy_metric,
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
