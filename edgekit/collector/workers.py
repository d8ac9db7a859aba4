"""Several collectors, each in a process of its own, sharing one subscription.

One collector is one Python process: paho's network loop, payload validation and the database
writes share one interpreter lock, which caps it near 10,000 reports/s on a fast core. The broker
splits a shared subscription (``$share/<group>/...``) between sessions, so N processes with
their own client ids and the same group take N slices of the load, each still acknowledging only
after its own commit.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import queue
import signal
import time
from collections.abc import Callable
from typing import Any

from edgekit.collector.settings import CollectorSettings
from edgekit.collector.stats import CollectorStats
from edgekit.collector.store import Store
from edgekit.collector.subscriber import Collector, StopFlag
from edgekit.errors import CollectorError, EdgekitError

# How often the parent looks at its stop flag and at its workers.
_POLL_S = 0.2


def run_workers(
    settings: CollectorSettings,
    db_url: str,
    *,
    workers: int,
    duration_s: float | None = None,
    stop: StopFlag | None = None,
    on_started: Callable[[], None] | None = None,
) -> CollectorStats:
    """Run ``workers`` collectors in a share group until ``duration_s`` or ``stop``; their
    counts added up. CollectorError if one cannot start or dies."""
    if settings.share_group is None:
        raise CollectorError("several collector processes need a share group (--share)")
    if workers < 1:
        raise CollectorError("workers must be at least 1")
    ctx = mp.get_context("spawn")
    children_stop = ctx.Event()
    messages: Any = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                settings.with_client_id(f"{settings.broker.session.client_id}-{i}"),
                db_url,
                children_stop,
                messages,
            ),
            name=f"edgekit-collector-{i}",
            daemon=True,
        )
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    totals = CollectorStats()
    reported = 0
    try:
        # Spawning re-imports edgekit in each child: allow for that beyond the MQTT timeouts.
        started = 0
        deadline = time.monotonic() + 30 + 3 * settings.timeout_s
        while started < workers:
            kind, payload = _next(messages, procs, deadline)
            if kind == "error":
                raise CollectorError(payload)
            started += kind == "started"
        if on_started is not None:
            on_started()
        end = None if duration_s is None else time.monotonic() + duration_s
        while not (stop is not None and stop.is_set()) and (end is None or time.monotonic() < end):
            dead = [p.name for p in procs if p.exitcode is not None]
            if dead:
                raise CollectorError(f"collector process {dead[0]} stopped unexpectedly")
            try:
                kind, payload = messages.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if kind == "error":
                raise CollectorError(payload)
    finally:
        children_stop.set()
        deadline = time.monotonic() + 3 * settings.timeout_s
        while reported < len(procs) and time.monotonic() < deadline:
            try:
                kind, payload = messages.get(timeout=_POLL_S)
            except queue.Empty:
                if all(p.exitcode is not None for p in procs) and messages.empty():
                    break
                continue
            if kind == "stats":
                totals += CollectorStats(**payload)
                reported += 1
        for proc in procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()  # unacknowledged messages return to the broker's queue
    return totals


def _next(messages: Any, procs: list[Any], deadline: float) -> tuple[str, Any]:
    while time.monotonic() < deadline:
        try:
            kind, payload = messages.get(timeout=_POLL_S)
            return str(kind), payload
        except queue.Empty:
            dead = [p for p in procs if p.exitcode is not None]
            if dead and messages.empty():
                return "error", f"collector process {dead[0].name} exited ({dead[0].exitcode})"
    return "error", "collector processes did not start in time"


def _worker(settings: CollectorSettings, db_url: str, stop: StopFlag, messages: Any) -> None:
    # Ctrl-C reaches the whole process group; the parent decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    collector = None
    try:
        with Store(db_url) as store:
            collector = Collector(settings, store)
            with collector:
                messages.put(("started", settings.broker.session.client_id))
                collector.run(stop=stop)
    except EdgekitError as exc:
        messages.put(("error", str(exc)))
    finally:
        stats = collector.stats if collector is not None else CollectorStats()
        messages.put(("stats", dataclasses.asdict(stats)))
