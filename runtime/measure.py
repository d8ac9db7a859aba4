"""One measurement window on the board: latency like benchmark_model, accuracy, memory."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from edgekit.drift import DriftSummary, WindowDrift
from edgekit.progress import Progress, SilentProgress
from edgekit.runtime.benchmark import latency_stats, time_runs
from edgekit.runtime.drift import eval_pass, window_drift
from edgekit.runtime.host import host_facts, peak_rss_mb
from edgekit.runtime.session import DeviceSession
from edgekit.schema import AccuracyResult, LatencyStats, Report, utc_now


@dataclass(frozen=True)
class Measurement:
    """What one window measured."""

    started_at: datetime
    finished_at: datetime
    latency: LatencyStats
    accuracy: AccuracyResult | None
    peak_rss_mb: float
    drift: WindowDrift | None = None


def measure(
    session: DeviceSession,
    *,
    runs: int = 100,
    warmup: int = 10,
    min_seconds: float = 0.0,
    include_init: bool = True,
    extra_ms: Sequence[float] = (),
    watched_drift: DriftSummary | None = None,
    progress: Progress | None = None,
) -> Measurement:
    """First inference, ``warmup`` runs, then at least ``runs`` timed runs (and ``min_seconds``),
    then accuracy on the bundle's eval sample. ``extra_ms`` are latencies of real inputs run in
    the same window (a watched folder); they count in the window's statistics, and
    ``watched_drift`` summarises them."""
    started = utc_now()
    with (progress or SilentProgress()).task("Timing inference", total=runs) as task:
        first_ms, times = time_runs(
            session.backend,
            session.example_input(),
            warmup=warmup,
            runs=runs,
            min_seconds=min_seconds,
            task=task,
        )
    latency = latency_stats(
        [*times, *extra_ms], init_ms=session.init_ms if include_init else None, first_ms=first_ms
    )
    accuracy, eval_drift = eval_pass(session)
    drift = window_drift(session, eval_drift, watched_drift)
    return Measurement(started, utc_now(), latency, accuracy, peak_rss_mb(), drift)


def to_report(
    session: DeviceSession,
    measurement: Measurement,
    *,
    device_id: str,
    sequence: int = 0,
    dropped_reports: int = 0,
    workload_inputs: int = 0,
) -> Report:
    """The wire report (edgekit.report/1) for one window."""
    return Report(
        message_id=uuid.uuid4().hex,
        device_id=device_id,
        sequence=sequence,
        bundle_id=session.manifest.bundle_id,
        bundle_digest=session.manifest_digest,
        profile=session.manifest.profile.name,
        artifact=session.artifact.file,
        format=session.artifact.format,
        backend=session.backend.name,
        backend_version=session.backend.version[:64],
        threads=session.threads,
        started_at=measurement.started_at,
        finished_at=measurement.finished_at,
        latency=measurement.latency,
        accuracy=measurement.accuracy,
        peak_rss_mb=measurement.peak_rss_mb,
        build=session.build_figures(),
        host=host_facts(),
        dropped_reports=dropped_reports,
        workload_inputs=workload_inputs,
        drift=measurement.drift,
        selection=session.selection,
    )
