"""The board's long-lived daemon: measure the deployed bundle every interval, report over MQTT.

Each window (latency percentiles, accuracy on the eval sample, peak RSS, plus any inputs from a
watched folder) becomes one report. The report goes into the durable outbox *before* it is
published and leaves it only on PUBACK, so broker outages, crashes and reboots lose nothing. A
broker that cannot be reached is said once; the daemon keeps measuring and buffering and the
reporter reconnects with capped exponential backoff.

With a deploy directory the daemon also carries out the commands of its deploy topic between
windows (:mod:`edgekit.runtime.daemon_deploy`): fetch, verify, swap, measure, roll back.

SIGTERM/SIGINT: the current window finishes (windows are short), what can be flushed is flushed
within a timeout, ``offline`` is published, and the daemon exits 0. A second signal abandons the
flush; the outbox keeps everything for the next start.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from edgekit.errors import ConfigError
from edgekit.runtime.daemon_deploy import Deployment
from edgekit.runtime.daemon_settings import DaemonSettings
from edgekit.runtime.measure import Measurement, measure, to_report
from edgekit.runtime.outbox import Outbox
from edgekit.runtime.reporter import Reporter
from edgekit.runtime.session import BoardChoice, DeviceSession
from edgekit.runtime.watch import WatchedFolder

# How often the watched folder is looked at between windows.
WATCH_POLL_S = 0.5


class Daemon:
    """Runs measurement windows and reports them until stopped (or ``reports`` are done)."""

    def __init__(self, settings: DaemonSettings, *, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self._say = say
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self.produced = 0

    def stop(self) -> None:
        """Finish the current window, flush, go offline (first call); abandon the flush (second)."""
        if self._stop.is_set():
            self._abandon.set()
        self._stop.set()

    def run(self) -> int:
        """Run until stopped; return the number of reports produced."""
        s = self.settings
        if s.outbox is None:
            raise ConfigError("no outbox file: set 'outbox' (resolve_settings fills in a default)")
        # Without a deploy directory a bad bundle is refused before anything is opened.
        session = None if s.deploy_dir is not None else self._open(s.bundle)
        with Outbox(s.outbox, max_bytes=s.outbox_max_bytes) as outbox:
            if outbox.recovered_from is not None:
                self._say(f"outbox was damaged; kept it as {outbox.recovered_from}, started afresh")
            if len(outbox):
                self._say(f"{len(outbox)} report(s) from an earlier run wait in the outbox")
            deployment = None
            if session is None:
                deployment = Deployment(s, outbox, say=self._say, stopping=self._stop.is_set)
                session = deployment.open_first(self._open)
            with (
                Reporter(s.broker_settings, outbox, device_id=s.device_id) as reporter,
                deployment.listening(reporter) if deployment else contextlib.nullcontext(),
            ):
                self._loop(session, outbox, reporter, deployment)
                self._finish(outbox, reporter)
        return self.produced

    def _open(self, bundle: Path) -> DeviceSession:
        s = self.settings
        assert s.outbox is not None  # resolve_settings fills it in
        choice = BoardChoice(
            cache_dir=s.selection_cache or s.outbox.parent / "selection",
            reselect=s.reselect,
            max_seconds=s.select_seconds,
        )
        session = DeviceSession.open(bundle, backend=s.backend, threads=s.threads,
                                     trust_key=s.trust_key, choice=choice)  # fmt: skip
        if session.selection is not None:
            times = ", ".join(f"{c.artifact} {c.p50_ms:.3g} ms" if c.p50_ms is not None
                              else f"{c.artifact} ({c.reason})"
                              for c in session.selection.candidates)  # fmt: skip
            self._say(f"chose {session.selection.chosen} among the bundle's candidates: {times}")
        self._say(
            f"bundle {session.manifest.bundle_id}: {session.artifact.file} on "
            f"{session.backend.name} {session.backend.version}, {session.threads} thread(s)"
        )
        return session

    def _watch(self, session: DeviceSession) -> WatchedFolder | None:
        s = self.settings
        if s.watch is None:
            return None
        return WatchedFolder(s.watch, session, out=s.watch_out, pixel_range=s.pixel_range)

    def _loop(
        self,
        session: DeviceSession,
        outbox: Outbox,
        reporter: Reporter,
        deployment: Deployment | None,
    ) -> None:
        s = self.settings
        was_connected = self._announce(reporter, None)
        watched = self._watch(session)
        extra: list[float] = []
        processed_before = 0
        fresh = True  # the session's first window reports its load time
        while not self._stop.is_set():
            if watched is not None:
                extra.extend(watched.poll())
            try:
                measurement = measure(
                    session, runs=s.window, warmup=s.warmup, include_init=fresh,
                    extra_ms=extra, watched_drift=None if watched is None else watched.drift.take(),
                )  # fmt: skip
            except Exception as exc:  # any failure of a bundle on trial rolls it back
                if deployment is None:
                    raise
                session = deployment.window_failed(exc, self._open)
                watched, extra, processed_before, fresh = self._watch(session), [], 0, True
                continue
            fresh = False
            workload = 0 if watched is None else watched.processed - processed_before
            processed_before = 0 if watched is None else watched.processed
            make = partial(
                _report_bytes,
                session,
                measurement,
                device_id=s.device_id,
                dropped_reports=outbox.dropped,
                workload_inputs=workload,
            )
            # Stored (with a gap-free sequence number) before it is published.
            _, message_id = outbox.put_next(reporter.report_topic, make)
            extra = []
            reporter.publish_id(message_id)
            self.produced += 1
            if deployment is not None:
                deployment.window_done()
            was_connected = self._announce(reporter, was_connected)
            if s.reports is not None and self.produced >= s.reports:
                break
            deadline = time.monotonic() + s.interval
            while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
                self._stop.wait(min(left, WATCH_POLL_S if watched or deployment else left))
                if watched is not None:
                    extra.extend(watched.poll())
                swapped = deployment.poll(self._open) if deployment is not None else None
                if swapped is not None:
                    session, fresh = swapped, True
                    watched, extra, processed_before = self._watch(session), [], 0
                    break

    def _announce(self, reporter: Reporter, was: bool | None) -> bool:
        """Say when the connection comes or goes: once per change, never per window."""
        now = reporter.connected
        if now and was is not True:
            self._say(f"connected to {reporter.settings.url}")
        elif not now and was is not False:
            reason = reporter.last_error or "not connected"
            self._say(f"broker unreachable ({reason}); measuring and buffering reports")
        return now

    def _finish(self, outbox: Outbox, reporter: Reporter) -> None:
        s = self.settings
        pending = len(outbox)
        if pending and not self._abandon.is_set():
            # Also while disconnected: the reporter resends everything when it reconnects.
            pending = reporter.flush(s.flush_timeout)
        if pending:
            self._say(f"{pending} report(s) stay in the outbox {s.outbox} for the next start")
        self._say(f"stopping after {self.produced} report(s)")


def _report_bytes(
    session: DeviceSession,
    measurement: Measurement,
    sequence: int,
    *,
    device_id: str,
    dropped_reports: int,
    workload_inputs: int,
) -> tuple[str, bytes]:
    """(message id, payload) of a window's report with the sequence the outbox allotted."""
    report = to_report(
        session,
        measurement,
        device_id=device_id,
        sequence=sequence,
        dropped_reports=dropped_reports,
        workload_inputs=workload_inputs,
    )
    return report.message_id, report.to_json()
