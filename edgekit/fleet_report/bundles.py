"""Per bundle and per profile: what each build measured on the boards, its estimate's error,
and the bundle to pick for each profile."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from edgekit.collector.cells import Totals
from edgekit.collector.snapshot import FleetSnapshot
from edgekit.fleet_report.hosts import HostMatch, host_match

# Each (device, bundle digest) pair's windows added up over every bucket.
Pairs = dict[tuple[str, str], Totals]
# Bundles within this many points of a profile's most accurate are "as accurate".
ACCURACY_TOLERANCE_PT = 1.0


@dataclass(frozen=True, slots=True)
class BundleFigures:
    """One bundle: its build's figures and what the boards measured."""

    bundle_digest: str
    bundle_id: str
    label: str  # name, short digest and profile: what axes and tables show
    profile: str
    artifact: str
    format: str
    model_bytes: int
    first_seen: datetime | None
    est_latency_ms: float | None
    metric: str | None
    fp32: float | None
    quantized: float | None
    samples: int | None  # the eval-sample samples fp32 and quantized were measured on
    build_accuracy_on: str  # those samples in words: "build, eval sample, 200 samples"
    variant: str | None
    host_p50_ms: float | None  # the build host's one-sample p50 of the artifact
    host_p50_fp32_ms: float | None  # and of its fp32 model, side by side
    devices: int
    reports: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_p99_ms: float | None
    accuracy: float | None
    peak_rss_mb: float | None
    init_ms: float | None
    first_ms: float | None
    # Measured on hosts that are the profile's board (simulated hosts left out); None: none.
    board_p50_ms: float | None
    board_reports: int
    device_p50: tuple[tuple[str, float], ...]  # each board's mean p50

    @property
    def short_digest(self) -> str:
        """The first 7 hex digits of the manifest digest."""
        return self.bundle_digest[:7]

    @property
    def short_label(self) -> str:
        """Name and short digest (where the profile is said already)."""
        return f"{self.bundle_id} · {self.short_digest}"

    @property
    def estimate_ratio(self) -> float | None:
        """Measured p50 on real boards over the build's estimate."""
        return ratio(self.board_p50_ms, self.est_latency_ms)

    @property
    def slower_than_fp32(self) -> bool:
        """True when what ships ran slower than its fp32 model on the build host."""
        if self.host_p50_ms is None or self.host_p50_fp32_ms is None:
            return False
        return self.host_p50_ms > self.host_p50_fp32_ms

    @property
    def fp32_warning(self) -> str | None:
        """The warning line when it is slower than fp32 on its build host, else None."""
        if not self.slower_than_fp32:
            return None
        return (
            f"{self.label}: slower than fp32 on its build host: "
            f"{self.host_p50_ms:.4g} ms against {self.host_p50_fp32_ms:.4g} ms"
        )


@dataclass(frozen=True, slots=True)
class ProfileLoop:
    """Estimated against measured latency for one device profile, over all its reports."""

    profile: str
    bundles: int
    devices: int
    reports: int
    est_latency_ms: float | None
    measured_p50_ms: float | None  # on the profile's own kind of host
    measured_over_estimated: float | None
    simulated_reports: int  # reports from hosts that are not the profile's board


@dataclass(frozen=True, slots=True)
class BestBundle:
    """The bundle to pick for a profile, and why."""

    profile: str
    bundle_digest: str
    label: str
    p50_ms: float
    accuracy: float | None
    reason: str


def bundle_label(bundle_id: str, digest: str, profile: str) -> str:
    """How a bundle is named on axes and in tables: name, short digest, profile."""
    return f"{bundle_id} · {digest[:7]} · {profile}"


def build_accuracy_on(samples: int | None, *, measured: bool = True) -> str:
    """Which samples, and how many, the build's fp32 and quantized accuracy were measured on."""
    if not measured:
        return "no accuracy measured at build"
    if samples is None:
        # Reports of bundles from before edgekit 0.2 do not say (their figures may come from
        # all the build's eval data, not the eval sample the boards score).
        return "build, sample count unknown (a bundle from an older edgekit)"
    return f"build, eval sample, {samples} sample{'' if samples == 1 else 's'}"


def fp32_warnings(bundles: Sequence[BundleFigures]) -> tuple[str, ...]:
    """One line per bundle that ran slower than its fp32 model on its build host."""
    return tuple(w for b in bundles if (w := b.fp32_warning) is not None)


def bundle_figures(snapshot: FleetSnapshot, pairs: Pairs) -> tuple[BundleFigures, ...]:
    """Each bundle's build figures beside the fleet's measurements."""
    machines = {d.device_id: d.machine for d in snapshot.devices}
    per_bundle: dict[str, list[tuple[str, Totals]]] = {}
    for (device, digest), totals in pairs.items():
        per_bundle.setdefault(digest, []).append((device, totals))
    out = []
    for b in snapshot.bundles:
        mine = per_bundle.get(b.bundle_digest, [])
        t = Totals.merged(totals for _, totals in mine)
        on_boards = Totals.merged(
            totals
            for device, totals in mine
            if host_match(machines.get(device), b.profile) is HostMatch.MATCH
        )
        per_device = dict(mine)
        measured = bool(t.windows)
        out.append(
            BundleFigures(
                bundle_digest=b.bundle_digest, bundle_id=b.bundle_id,
                label=bundle_label(b.bundle_id, b.bundle_digest, b.profile), profile=b.profile,
                artifact=b.artifact, format=b.format, model_bytes=b.model_bytes,
                first_seen=b.first_seen, est_latency_ms=b.est_latency_ms, metric=b.metric,
                fp32=b.fp32, quantized=b.quantized, samples=b.samples,
                build_accuracy_on=build_accuracy_on(
                    b.samples, measured=b.fp32 is not None or b.quantized is not None
                ),
                variant=b.variant, host_p50_ms=b.host_p50_ms,
                host_p50_fp32_ms=b.host_p50_fp32_ms, devices=b.devices, reports=t.windows,
                p50_ms=t.p50_ms if measured else None,
                p90_ms=t.mean(t.sum_p90_ms) if measured else None,
                p99_ms=t.mean(t.sum_p99_ms) if measured else None,
                max_p99_ms=t.max_p99_ms if measured else None, accuracy=t.accuracy,
                peak_rss_mb=t.max_rss_mb if measured else None, init_ms=t.init_ms,
                first_ms=t.first_ms, board_p50_ms=on_boards.p50_ms if on_boards.windows else None,
                board_reports=on_boards.windows,
                device_p50=tuple(sorted((d, v.p50_ms) for d, v in per_device.items())),
            )
        )  # fmt: skip
    return tuple(out)


def profile_loops(bundles: Sequence[BundleFigures]) -> tuple[ProfileLoop, ...]:
    """Per profile: the build's estimate against the boards' p50, weighted by reports."""
    loops = []
    for profile in sorted({b.profile for b in bundles if b.reports}):
        mine = [b for b in bundles if b.profile == profile and b.reports]
        on_boards = [b for b in mine if b.board_reports]
        estimated = [b for b in on_boards if b.est_latency_ms is not None]
        counted = sum(b.board_reports for b in estimated)
        est = (
            sum((b.est_latency_ms or 0.0) * b.board_reports for b in estimated) / counted
            if counted
            else None
        )
        weight = sum(b.board_reports for b in on_boards)
        measured = (
            sum((b.board_p50_ms or 0.0) * b.board_reports for b in on_boards) / weight
            if weight
            else None
        )
        loops.append(
            ProfileLoop(
                profile=profile,
                bundles=len(mine),
                devices=sum(b.devices for b in mine),
                reports=sum(b.reports for b in mine),
                est_latency_ms=est,
                measured_p50_ms=measured,
                measured_over_estimated=ratio(measured, est),
                simulated_reports=sum(b.reports - b.board_reports for b in mine),
            )
        )
    return tuple(loops)


def best_bundles(bundles: Sequence[BundleFigures]) -> tuple[BestBundle, ...]:
    """Per profile, the fastest bundle among the as-accurate ones."""
    out = []
    for profile in sorted({b.profile for b in bundles if b.p50_ms is not None}):
        mine = [b for b in bundles if b.profile == profile and b.p50_ms is not None]
        scored = [b.accuracy for b in mine if b.accuracy is not None]
        top = max(scored) if scored else None
        eligible = [
            b
            for b in mine
            if top is None or b.accuracy is None or b.accuracy >= top - ACCURACY_TOLERANCE_PT
        ]
        best = min(eligible, key=lambda b: b.p50_ms or 0.0)
        if len(mine) == 1:
            reason = "the only bundle measured"
        elif top is None:
            reason = f"fastest of {len(mine)} (no accuracy reported)"
        else:
            reason = f"fastest of {len(eligible)} within {ACCURACY_TOLERANCE_PT:g} pt of the best"
        out.append(BestBundle(profile, best.bundle_digest, best.label, best.p50_ms or 0.0,
                              best.accuracy, reason))  # fmt: skip
    return tuple(out)


def ratio(measured: float | None, estimated: float | None) -> float | None:
    """measured / estimated, None when either is unknown (or the estimate is not positive)."""
    if measured is None or estimated is None or estimated <= 0:
        return None
    return measured / estimated


def delta(value: float | None, reference: float | None) -> float | None:
    """value - reference, None when either is unknown."""
    return None if value is None or reference is None else value - reference
