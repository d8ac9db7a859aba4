"""The fleet report's figures, derived from a store snapshot; every output format shows these.

The closed loop: each bundle carries the latency its build estimated for the profile's board;
reports carry what the board measured. ``measured / estimated`` per device and per profile says
how far the profile's throughput figures are off, which is what to fix in the profile.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from edgekit.collector.snapshot import BundleRow, DeviceRow, FleetSnapshot, RejectedEntry


@dataclass(frozen=True, slots=True)
class DeviceBundleFigures:
    """One device running one bundle."""

    device_id: str
    device_status: str | None
    bundle_id: str
    bundle_digest: str
    profile: str
    backend: str
    reports: int
    last_report_at: datetime
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_p99_ms: float
    est_latency_ms: float | None
    measured_over_estimated: float | None
    accuracy_metric: str | None
    accuracy_on_device: float | None
    accuracy_fp32: float | None
    accuracy_build: float | None
    delta_vs_fp32: float | None
    delta_vs_build: float | None
    model_bytes: int
    peak_rss_mb: float

    @property
    def label(self) -> str:
        """Short name for plot axes."""
        return f"{self.device_id} / {self.bundle_id}"


@dataclass(frozen=True, slots=True)
class ProfileLoop:
    """Estimated against measured latency for one device profile, over all its reports."""

    profile: str
    bundles: int
    devices: int
    reports: int
    est_latency_ms: float | None
    measured_p50_ms: float
    measured_over_estimated: float | None


@dataclass(frozen=True, slots=True)
class FleetFigures:
    """Everything the report shows."""

    generated_at: datetime
    report_count: int
    status_count: int
    rejected_count: int
    devices: tuple[DeviceRow, ...]
    bundles: tuple[BundleRow, ...]
    device_bundles: tuple[DeviceBundleFigures, ...]
    profiles: tuple[ProfileLoop, ...]
    recent_rejected: tuple[RejectedEntry, ...]

    @property
    def is_empty(self) -> bool:
        """Nothing stored yet: the report says so instead of drawing empty plots."""
        return self.report_count == 0 and not self.devices and self.rejected_count == 0

    @property
    def devices_online(self) -> int:
        """Devices whose last status is online."""
        return sum(1 for d in self.devices if d.last_status == "online")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready structure (timestamps as ISO 8601 strings)."""
        return _jsonable(
            {
                "generated_at": self.generated_at,
                "totals": {
                    "reports": self.report_count,
                    "devices": len(self.devices),
                    "devices_online": self.devices_online,
                    "bundles": len(self.bundles),
                    "status_changes": self.status_count,
                    "rejected": self.rejected_count,
                },
                "devices": [asdict(d) for d in self.devices],
                "bundles": [asdict(b) for b in self.bundles],
                "device_bundles": [asdict(r) for r in self.device_bundles],
                "profiles": [asdict(p) for p in self.profiles],
                "recent_rejected": [asdict(r) for r in self.recent_rejected],
            }
        )


def fleet_figures(snapshot: FleetSnapshot) -> FleetFigures:
    """Derive the report's figures (deltas, ratios, per-profile loop) from a snapshot."""
    status = {d.device_id: d.last_status for d in snapshot.devices}
    rows = []
    for r in snapshot.device_bundles:
        build = r.build_quantized if r.build_metric == r.accuracy_metric else None
        fp32 = r.build_fp32 if r.build_metric == r.accuracy_metric else None
        rows.append(
            DeviceBundleFigures(
                device_id=r.device_id,
                device_status=status.get(r.device_id),
                bundle_id=r.bundle_id,
                bundle_digest=r.bundle_digest,
                profile=r.profile,
                backend=r.backend,
                reports=r.reports,
                last_report_at=r.last_received_at,
                p50_ms=r.p50_ms,
                p90_ms=r.p90_ms,
                p99_ms=r.p99_ms,
                max_p99_ms=r.max_p99_ms,
                est_latency_ms=r.est_latency_ms,
                measured_over_estimated=_ratio(r.p50_ms, r.est_latency_ms),
                accuracy_metric=r.accuracy_metric,
                accuracy_on_device=r.accuracy,
                accuracy_fp32=fp32,
                accuracy_build=build,
                delta_vs_fp32=_delta(r.accuracy, fp32),
                delta_vs_build=_delta(r.accuracy, build),
                model_bytes=r.model_bytes,
                peak_rss_mb=r.peak_rss_mb,
            )
        )
    return FleetFigures(
        generated_at=snapshot.taken_at,
        report_count=snapshot.report_count,
        status_count=snapshot.status_count,
        rejected_count=snapshot.rejected_count,
        devices=snapshot.devices,
        bundles=snapshot.bundles,
        device_bundles=tuple(rows),
        profiles=tuple(_profile_loops(rows)),
        recent_rejected=snapshot.recent_rejected,
    )


def _profile_loops(rows: list[DeviceBundleFigures]) -> list[ProfileLoop]:
    loops = []
    for profile in sorted({r.profile for r in rows}):
        mine = [r for r in rows if r.profile == profile]
        reports = sum(r.reports for r in mine)
        # Weighted by report count, so a chatty device counts as much as it measured; bundles
        # without an estimate (unknown) are left out of the estimate's average.
        estimated = [r for r in mine if r.est_latency_ms is not None]
        counted = sum(r.reports for r in estimated)
        est = (
            sum((r.est_latency_ms or 0.0) * r.reports for r in estimated) / counted
            if counted
            else None
        )
        measured = sum(r.p50_ms * r.reports for r in mine) / reports
        loops.append(
            ProfileLoop(
                profile=profile,
                bundles=len({r.bundle_digest for r in mine}),
                devices=len({r.device_id for r in mine}),
                reports=reports,
                est_latency_ms=est,
                measured_p50_ms=measured,
                measured_over_estimated=_ratio(measured, est),
            )
        )
    return loops


def _ratio(measured: float, estimated: float | None) -> float | None:
    return measured / estimated if estimated is not None and estimated > 0 else None


def _delta(value: float | None, reference: float | None) -> float | None:
    return None if value is None or reference is None else value - reference


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
