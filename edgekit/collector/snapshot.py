"""What the fleet report reads from the store: frozen rows, aggregated in SQL.

The unit is the :class:`Cell`: the windows of one device on one bundle within one time bucket,
as exact sums, minima and maxima. Everything else the report shows (per device, per bundle, the
fleet, over time) adds cells up, so no figure is sampled and a million reports cost the report
what a few thousand cells cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from edgekit.schema import Selection


@dataclass(frozen=True, slots=True)
class ReportFilter:
    """Which reports the report covers: since a time, one device, one profile (None: all)."""

    since: datetime | None = None
    device: str | None = None
    profile: str | None = None

    @property
    def active(self) -> bool:
        """True when any filter is set."""
        return self.since is not None or self.device is not None or self.profile is not None

    def describe(self) -> str:
        """The filters in words ("" when none)."""
        parts = []
        if self.device is not None:
            parts.append(f"device {self.device}")
        if self.profile is not None:
            parts.append(f"profile {self.profile}")
        if self.since is not None:
            parts.append(f"since {self.since:%Y-%m-%d %H:%M UTC}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class TimeAxis:
    """Report windows binned by start time: ``count`` buckets of ``width_s`` from ``start``."""

    start: datetime
    width_s: float
    count: int

    def at(self, bucket: int) -> datetime:
        """The middle of ``bucket``."""
        return self.start + timedelta(seconds=self.width_s * (bucket + 0.5))


@dataclass(frozen=True, slots=True)
class Cell:
    """The windows of one device on one bundle in one time bucket: exact sums and extremes.

    Only what the report draws: everything per window it reads comes from one covering index,
    and every aggregate costs the database a little per window, a million times.
    """

    device_id: str
    bundle_digest: str
    bucket: int
    windows: int
    first_s: float  # first and last window start: seconds since the epoch (UTC)
    last_s: float
    last_id: int
    sum_p50_ms: float
    sum_p90_ms: float
    sum_p99_ms: float
    max_p99_ms: float
    max_rss_mb: float
    init_windows: int
    sum_init_ms: float
    first_windows: int
    sum_first_ms: float
    accuracy_weighted: float | None  # sum of value * samples
    accuracy_samples: int | None

    @property
    def first_at(self) -> datetime:
        """The first window's start."""
        return utc_time(self.first_s)


def utc_time(seconds: float) -> datetime:
    """Seconds since the epoch as a UTC timestamp."""
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True)
class DriftCounts:
    """Binned drift summaries added up (see ``edgekit.collector.drift_store``)."""

    classes: int  # the model's classes before folding
    channels: int  # channel groups with statistics
    samples: int
    confidence: tuple[int, ...]
    class_bins: tuple[int, ...]
    sum_mean: tuple[float, ...]  # per channel group: samples * mean
    sum_square: tuple[float, ...]  # per channel group: samples * mean of squares


@dataclass(frozen=True, slots=True)
class DriftCell:
    """One source's drift (eval sample or watched inputs) of one device, bundle and bucket."""

    device_id: str
    bundle_digest: str
    artifact: str
    source: str
    bucket: int
    windows: int  # 0 for an eval-sample summary (stored once with its span, not per window)
    counts: DriftCounts
    first_at: datetime | None = None  # eval-sample summaries: the windows that gave it
    last_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DriftReference:
    """The build's reference summary of one artifact of a bundle."""

    bundle_digest: str
    artifact: str
    counts: DriftCounts


@dataclass(frozen=True, slots=True)
class LatestReport:
    """What one device's latest report on one bundle says beyond the cells' figures."""

    device_id: str
    bundle_digest: str
    received_at: datetime
    backend: str
    accuracy_metric: str | None


@dataclass(frozen=True, slots=True)
class BoardSelection:
    """How a board chose among a bundle's candidates (from its latest report on that bundle)."""

    device_id: str
    bundle_digest: str
    selection: Selection


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One device: identity, how much it reported, and its last known status."""

    device_id: str
    hostname: str | None
    machine: str | None
    system: str | None
    reports: int
    bundles: int
    first_seen: datetime
    last_seen: datetime
    last_status: str | None
    status_at: datetime | None


@dataclass(frozen=True, slots=True)
class BundleRow:
    """One bundle (by manifest digest) with its build-time figures."""

    bundle_digest: str
    bundle_id: str
    profile: str
    artifact: str
    format: str
    model_bytes: int
    est_latency_ms: float | None
    metric: str | None
    fp32: float | None
    quantized: float | None
    devices: int
    reports: int
    first_seen: datetime | None = None
    # From the bundle_builds table; None when unknown (an older bundle, or an older database).
    samples: int | None = None  # eval-sample samples fp32 and quantized were measured on
    variant: str | None = None
    host_p50_ms: float | None = None  # the build host's one-sample p50 of the artifact
    host_p50_fp32_ms: float | None = None  # and of its fp32 model, side by side


@dataclass(frozen=True, slots=True)
class DeviceBundleRow:
    """One device running one bundle: means over its report windows."""

    device_id: str
    bundle_digest: str
    bundle_id: str
    profile: str
    backend: str
    reports: int
    last_received_at: datetime
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_p99_ms: float
    peak_rss_mb: float
    accuracy_metric: str | None
    accuracy: float | None
    accuracy_samples: int | None
    est_latency_ms: float | None
    model_bytes: int
    build_metric: str | None
    build_fp32: float | None
    build_quantized: float | None


@dataclass(frozen=True, slots=True)
class RejectedEntry:
    """One rejected message, as much as the report shows of it."""

    topic: str
    reason: str
    payload_bytes: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """Everything the fleet report shows, read in one transaction."""

    taken_at: datetime
    devices: tuple[DeviceRow, ...]
    bundles: tuple[BundleRow, ...]
    report_count: int
    status_count: int
    rejected_count: int
    recent_rejected: tuple[RejectedEntry, ...]
    filters: ReportFilter = field(default_factory=ReportFilter)
    axis: TimeAxis | None = None
    cells: tuple[Cell, ...] = ()
    latest: tuple[LatestReport, ...] = ()  # one per device and bundle with cells
    drift_cells: tuple[DriftCell, ...] = ()
    drift_references: tuple[DriftReference, ...] = ()
    selections: tuple[BoardSelection, ...] = ()
    # The latest rollouts (edgekit.collector.rollout_queries.RolloutView), newest first.
    rollouts: tuple[Any, ...] = ()

    @property
    def is_empty(self) -> bool:
        """True when nothing at all has been stored yet."""
        return not (self.report_count or self.devices or self.rejected_count)

    @property
    def device_bundles(self) -> tuple[DeviceBundleRow, ...]:
        """Per device and bundle: the cells of every bucket added up."""
        from edgekit.collector.cells import device_bundle_rows

        return device_bundle_rows(self)
