"""The fleet report's figures, derived from a store snapshot; every output format shows these.

The closed loop: each bundle carries the latency its build estimated for the profile's board;
reports carry what the board measured. ``measured / estimated`` per bundle and per profile (on
hosts that are the profile's kind of board) says how far the profile's throughput figures are
off, which is what to fix in the profile.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, is_dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from edgekit.collector.cells import pair_totals
from edgekit.collector.snapshot import (
    BoardSelection,
    FleetSnapshot,
    RejectedEntry,
    ReportFilter,
    TimeAxis,
)
from edgekit.fleet_report.boards import (
    DeviceBundleFigures,
    DeviceFigures,
    device_bundle_figures,
    device_figures,
)
from edgekit.fleet_report.bundles import (
    BestBundle,
    BundleFigures,
    ProfileLoop,
    best_bundles,
    bundle_figures,
    fp32_warnings,
    profile_loops,
)
from edgekit.fleet_report.candidates import (
    BoardChoice,
    ChoiceSummary,
    board_choices,
    choice_summaries,
)
from edgekit.fleet_report.compare import Comparison, comparisons
from edgekit.fleet_report.drift_view import DriftScore, drift_scores
from edgekit.fleet_report.hosts import Health
from edgekit.fleet_report.series import Series, by_bundle

# With more boards than this, each board's trend on the fleet page merges this many buckets per
# point (a board's own page, --device, has every bucket): the page stays a few megabytes.
_COARSE = ((500, 4), (100, 2))


@dataclass(frozen=True, slots=True)
class FleetFigures:
    """Everything the report shows."""

    generated_at: datetime
    filters: ReportFilter
    axis: TimeAxis | None
    report_count: int
    status_count: int
    rejected_count: int
    devices: tuple[DeviceFigures, ...]
    bundles: tuple[BundleFigures, ...]
    device_bundles: tuple[DeviceBundleFigures, ...]
    profiles: tuple[ProfileLoop, ...]
    best: tuple[BestBundle, ...]
    comparisons: tuple[Comparison, ...]
    drift: tuple[DriftScore, ...]
    selections: tuple[BoardSelection, ...]
    choices: tuple[BoardChoice, ...]  # each selection with its runner-up and margin
    choice_summaries: tuple[ChoiceSummary, ...]  # per bundle: N boards chose X
    fp32_warnings: tuple[str, ...]  # bundles slower than fp32 on their build host
    rollouts: tuple[Any, ...]  # edgekit.collector.rollout_queries.RolloutView
    recent_rejected: tuple[RejectedEntry, ...]
    bundle_series: tuple[Series, ...]  # the fleet's windows per bundle over time
    device_series: dict[str, tuple[Series, ...]]  # each board's, per bundle

    @property
    def is_empty(self) -> bool:
        """Nothing stored yet: the report says so instead of drawing empty plots."""
        return self.report_count == 0 and not self.devices and self.rejected_count == 0

    @property
    def devices_online(self) -> int:
        """Devices whose last status is online."""
        return sum(1 for d in self.devices if d.last_status == "online")

    def health_counts(self) -> dict[str, int]:
        """How many boards are in each state of health."""
        counts = {h.value: 0 for h in Health}
        for d in self.devices:
            counts[d.health.value] += 1
        return counts

    @property
    def drifting(self) -> tuple[DriftScore, ...]:
        """The flagged drift scores."""
        return tuple(d for d in self.drift if d.flagged)

    @property
    def estimate_outliers(self) -> tuple[BundleFigures, ...]:
        """Bundles whose measured latency is off the build's estimate by more than 1.5x."""
        return tuple(
            b
            for b in self.bundles
            if b.estimate_ratio is not None and not (1 / 1.5 <= b.estimate_ratio <= 1.5)
        )

    def bundle(self, digest: str) -> BundleFigures | None:
        """The bundle of ``digest``, if the report covers it."""
        return next((b for b in self.bundles if b.bundle_digest == digest), None)

    def totals(self) -> dict[str, int]:
        """The headline counts."""
        return {
            "reports": self.report_count,
            "devices": len(self.devices),
            "devices_online": self.devices_online,
            "bundles": len(self.bundles),
            "status_changes": self.status_count,
            "rejected": self.rejected_count,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready structure (timestamps as ISO 8601 strings, enums as their values)."""
        return jsonable(
            {
                "generated_at": self.generated_at,
                "filters": self.filters,
                "axis": self.axis,
                "totals": self.totals(),
                "health": self.health_counts(),
                **{
                    f.name: getattr(self, f.name)
                    for f in fields(self)
                    if f.name not in ("generated_at", "filters", "axis")
                },
            }
        )


def fleet_figures(snapshot: FleetSnapshot) -> FleetFigures:
    """Derive the report's figures (health, host checks, trends, A/B, drift) from a snapshot."""
    totals = pair_totals(snapshot.cells)
    bundles = bundle_figures(snapshot, totals)
    labels = {b.bundle_digest: b.label for b in bundles}
    drift = drift_scores(snapshot)
    devices = device_figures(snapshot, totals, labels, drift)
    pairs = device_bundle_figures(snapshot, totals, labels, {d.device_id: d for d in devices})
    choices = board_choices(snapshot.selections, labels)
    axis = snapshot.axis
    merge = next((m for limit, m in _COARSE if len(devices) > limit), 1)
    per_device: dict[str, list[Any]] = {}
    for cell in snapshot.cells:
        per_device.setdefault(cell.device_id, []).append(cell)
    return FleetFigures(
        generated_at=snapshot.taken_at,
        filters=snapshot.filters,
        axis=axis,
        report_count=snapshot.report_count,
        status_count=snapshot.status_count,
        rejected_count=snapshot.rejected_count,
        devices=devices,
        bundles=bundles,
        device_bundles=pairs,
        profiles=profile_loops(bundles),
        best=best_bundles(bundles),
        comparisons=comparisons(bundles, pairs),
        drift=drift,
        selections=snapshot.selections,
        choices=choices,
        choice_summaries=choice_summaries(choices),
        fp32_warnings=fp32_warnings(bundles),
        rollouts=snapshot.rollouts,
        recent_rejected=snapshot.recent_rejected,
        bundle_series=by_bundle(snapshot.cells, axis) if axis else (),
        device_series={
            device: by_bundle(cells, axis, merge=merge) for device, cells in per_device.items()
        }
        if axis
        else {},
    )


def jsonable(value: Any) -> Any:
    """``value`` as JSON types: dataclasses as dicts, timestamps as ISO text, enums as values."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value
