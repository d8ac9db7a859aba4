"""Per bundle, per board and per profile: the cells added up into what the report tabulates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from edgekit.collector.cells import Totals
from edgekit.collector.snapshot import Cell, FleetSnapshot, utc_time
from edgekit.fleet_report.compare import Comparison, Pair, compare
from edgekit.fleet_report.drift_view import DriftScore
from edgekit.fleet_report.hosts import Health, HostMatch, health, host_match

# Each (device, bundle digest) pair's windows added up over every bucket.
Pairs = dict[tuple[str, str], Totals]
# Bundles within this many points of a profile's most accurate are "as accurate".
ACCURACY_TOLERANCE_PT = 1.0
MAX_COMPARISONS = 12


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
        return _ratio(self.board_p50_ms, self.est_latency_ms)


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of time a board ran one bundle."""

    bundle_digest: str
    label: str
    first_at: datetime
    last_at: datetime
    windows: int


@dataclass(frozen=True, slots=True)
class DeviceFigures:
    """One board: identity, health, host check, what it ran and when."""

    device_id: str
    hostname: str | None
    machine: str | None
    system: str | None
    last_status: str | None
    status_at: datetime | None
    health: Health
    host: HostMatch
    first_seen: datetime
    last_seen: datetime
    last_report_at: datetime | None
    reports: int
    interval_s: float | None
    profiles: tuple[str, ...]
    current_bundle: str | None
    history: tuple[Span, ...]
    p50_ms: float | None  # on the current bundle
    accuracy: float | None
    drifting: bool


@dataclass(frozen=True, slots=True)
class DeviceBundleFigures:
    """One device running one bundle."""

    device_id: str
    device_status: str | None
    bundle_id: str
    bundle_digest: str
    label: str
    profile: str
    backend: str
    host: HostMatch
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
    init_ms: float | None
    first_ms: float | None


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
                fp32=b.fp32, quantized=b.quantized, devices=b.devices, reports=t.windows,
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


def device_figures(
    snapshot: FleetSnapshot, pairs: Pairs, labels: dict[str, str], drift: Sequence[DriftScore]
) -> tuple[DeviceFigures, ...]:
    """Each board's health, host check and bundle history."""
    profiles = {b.bundle_digest: b.profile for b in snapshot.bundles}
    drifting = {d.device_id for d in drift if d.flagged}
    heard: dict[str, datetime] = {}
    for latest in snapshot.latest:
        if latest.device_id not in heard or latest.received_at > heard[latest.device_id]:
            heard[latest.device_id] = latest.received_at
    per_device: dict[str, list[Cell]] = {}
    for cell in snapshot.cells:
        per_device.setdefault(cell.device_id, []).append(cell)
    out = []
    for d in snapshot.devices:
        cells = sorted(per_device.get(d.device_id, []), key=lambda c: (c.first_s, c.last_id))
        digests = tuple(dict.fromkeys(c.bundle_digest for c in cells))
        t = Totals.merged(pairs[(d.device_id, digest)] for digest in digests)
        interval = _interval(t)
        history = _history(cells, labels)
        current = history[-1].bundle_digest if history else None
        now_on = pairs.get((d.device_id, current or ""), Totals())
        mine = tuple(dict.fromkeys(profiles[digest] for digest in digests))
        matches = [host_match(d.machine, p) for p in mine]
        worst = next((m for m in (HostMatch.SIMULATED, HostMatch.MISMATCHED) if m in matches),
                     HostMatch.MATCH if matches and all(m is HostMatch.MATCH for m in matches)
                     else HostMatch.UNKNOWN)  # fmt: skip
        out.append(
            DeviceFigures(
                device_id=d.device_id, hostname=d.hostname, machine=d.machine, system=d.system,
                last_status=d.last_status, status_at=d.status_at,
                health=health(d.last_status, heard.get(d.device_id), interval,
                              now=snapshot.taken_at),
                host=worst, first_seen=d.first_seen, last_seen=d.last_seen,
                last_report_at=heard.get(d.device_id), reports=t.windows,
                interval_s=None if interval is None else interval.total_seconds(),
                profiles=mine, current_bundle=current, history=history,
                p50_ms=now_on.p50_ms if now_on.windows else None, accuracy=now_on.accuracy,
                drifting=d.device_id in drifting,
            )
        )  # fmt: skip
    return tuple(out)


def device_bundle_figures(
    snapshot: FleetSnapshot, pairs: Pairs, labels: dict[str, str], devices: dict[str, DeviceFigures]
) -> tuple[DeviceBundleFigures, ...]:
    """Each board on each bundle, with accuracy against the build and latency against its
    estimate."""
    bundles = {b.bundle_digest: b for b in snapshot.bundles}
    latest = {(x.device_id, x.bundle_digest): x for x in snapshot.latest}
    out = []
    for (device, digest), t in sorted(pairs.items()):
        b, last = bundles[digest], latest[(device, digest)]
        same = b.metric is not None and b.metric == last.accuracy_metric
        build, fp32 = (b.quantized, b.fp32) if same else (None, None)
        d = devices.get(device)
        out.append(
            DeviceBundleFigures(
                device_id=device, device_status=d.last_status if d else None,
                bundle_id=b.bundle_id, bundle_digest=digest, label=labels[digest],
                profile=b.profile, backend=last.backend,
                host=host_match(d.machine if d else None, b.profile), reports=t.windows,
                last_report_at=last.received_at, p50_ms=t.p50_ms,
                p90_ms=t.mean(t.sum_p90_ms), p99_ms=t.mean(t.sum_p99_ms),
                max_p99_ms=t.max_p99_ms, est_latency_ms=b.est_latency_ms,
                measured_over_estimated=_ratio(t.p50_ms, b.est_latency_ms),
                accuracy_metric=last.accuracy_metric, accuracy_on_device=t.accuracy,
                accuracy_fp32=fp32, accuracy_build=build, delta_vs_fp32=_delta(t.accuracy, fp32),
                delta_vs_build=_delta(t.accuracy, build), model_bytes=b.model_bytes,
                peak_rss_mb=t.max_rss_mb, init_ms=t.init_ms, first_ms=t.first_ms,
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
                measured_over_estimated=_ratio(measured, est),
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


def comparisons(
    bundles: Sequence[BundleFigures], pairs: Sequence[DeviceBundleFigures]
) -> tuple[Comparison, ...]:
    """A/B for every two bundles of a profile that some board ran both of (older as A)."""
    by_device: dict[str, dict[str, DeviceBundleFigures]] = {}
    for p in pairs:
        by_device.setdefault(p.device_id, {})[p.bundle_digest] = p
    out = []
    for profile in sorted({b.profile for b in bundles}):
        mine = sorted((b for b in bundles if b.profile == profile and b.reports),
                      key=lambda b: (b.first_seen or datetime.max, b.bundle_id))  # fmt: skip
        for i, a in enumerate(mine):
            for b in mine[i + 1 :]:
                both = [
                    d for d in by_device.values() if a.bundle_digest in d and b.bundle_digest in d
                ]
                if not both:
                    continue
                paired = [_pair(d[a.bundle_digest], d[b.bundle_digest]) for d in both]
                sides = (a.bundle_digest, a.short_label), (b.bundle_digest, b.short_label)
                out.append(compare(profile, *sides, paired, boards=len(both)))
    out.sort(key=lambda c: (-len(c.pairs), c.profile))
    return tuple(out[:MAX_COMPARISONS])


def _pair(a: DeviceBundleFigures, b: DeviceBundleFigures) -> Pair:
    return Pair(a.device_id, a.p50_ms, b.p50_ms, a.reports, b.reports, a.accuracy_on_device,
                b.accuracy_on_device)  # fmt: skip


def _history(cells: list[Cell], labels: dict[str, str]) -> tuple[Span, ...]:
    runs: list[list[Cell]] = []
    for c in cells:  # in time order: a run of one bundle lasts until the board changes bundle
        if runs and runs[-1][0].bundle_digest == c.bundle_digest:
            runs[-1].append(c)
        else:
            runs.append([c])
    return tuple(
        Span(
            run[0].bundle_digest,
            labels[run[0].bundle_digest],
            utc_time(min(c.first_s for c in run)),
            utc_time(max(c.last_s for c in run)),
            sum(c.windows for c in run),
        )
        for run in runs
    )


def _interval(t: Totals) -> timedelta | None:
    if t.windows < 2 or t.first_s is None or t.last_s is None:
        return None
    return timedelta(seconds=(t.last_s - t.first_s) / (t.windows - 1))


def _ratio(measured: float | None, estimated: float | None) -> float | None:
    if measured is None or estimated is None or estimated <= 0:
        return None
    return measured / estimated


def _delta(value: float | None, reference: float | None) -> float | None:
    return None if value is None or reference is None else value - reference
