"""What the fleet report reads from the store: frozen rows, aggregated in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
    mean_ms: float
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
    device_bundles: tuple[DeviceBundleRow, ...]
    report_count: int
    status_count: int
    rejected_count: int
    recent_rejected: tuple[RejectedEntry, ...]

    @property
    def is_empty(self) -> bool:
        """True when nothing at all has been stored yet."""
        return not (self.report_count or self.devices or self.rejected_count)
