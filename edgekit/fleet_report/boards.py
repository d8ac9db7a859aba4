"""Per board: health, host check and bundle history; per board and bundle: the windows it
measured against the build's accuracy and estimate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from edgekit.collector.cells import Totals
from edgekit.collector.snapshot import Cell, FleetSnapshot, utc_time
from edgekit.fleet_report.bundles import Pairs, delta, ratio
from edgekit.fleet_report.drift_view import DriftScore
from edgekit.fleet_report.hosts import Health, HostMatch, health, host_match


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
    accuracy_build_samples: int | None  # eval-sample samples behind both build figures
    delta_vs_fp32: float | None
    delta_vs_build: float | None
    model_bytes: int
    peak_rss_mb: float
    init_ms: float | None
    first_ms: float | None


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
                measured_over_estimated=ratio(t.p50_ms, b.est_latency_ms),
                accuracy_metric=last.accuracy_metric, accuracy_on_device=t.accuracy,
                accuracy_fp32=fp32, accuracy_build=build,
                accuracy_build_samples=b.samples if same else None,
                delta_vs_fp32=delta(t.accuracy, fp32),
                delta_vs_build=delta(t.accuracy, build), model_bytes=b.model_bytes,
                peak_rss_mb=t.max_rss_mb, init_ms=t.init_ms, first_ms=t.first_ms,
            )
        )  # fmt: skip
    return tuple(out)


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
