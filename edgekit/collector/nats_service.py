"""The NATS collector as a service: what ``edgekit collect --nats`` calls.

The layout (streams and the durable) is set up once, then one consumer runs in this process or
``workers`` run in processes of their own. All of them, here and on other hosts, pull from the
same durable: JetStream hands each message to one of them, and one that dies leaves its
unacknowledged messages to the others after ``ack_wait``.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import queue
import signal
import time
from collections.abc import Callable
from typing import Any

from edgekit.collector.nats_consumer import NatsConsumer
from edgekit.collector.nats_settings import NatsCollectorSettings
from edgekit.collector.stats import CollectorStats
from edgekit.collector.store import DEFAULT_DB_URL, Store
from edgekit.collector.subscriber import StopFlag
from edgekit.errors import CollectorError, EdgekitError

_POLL_S = 0.2


def serve_nats(
    settings: NatsCollectorSettings,
    db_url: str = DEFAULT_DB_URL,
    *,
    workers: int = 1,
    duration_s: float | None = None,
    stop: StopFlag | None = None,
    on_started: Callable[[str], None] | None = None,
) -> CollectorStats:
    """Collect from the NATS stream into ``db_url`` until ``duration_s`` or ``stop``; the counts.

    The database is opened first, so a bad URL is reported before anything connects.
    """
    if not 1 <= workers <= 64:
        raise CollectorError(f"workers must be 1..64, not {workers}")
    layout = settings.layout
    tell = on_started or (lambda _message: None)
    with Store(db_url) as store:
        where = (
            f"{layout.prefix}/+/report and status from NATS {settings.where} (stream "
            f"{layout.stream}, durable {layout.durable}) into {store.display_url}"
        )
        consumer = NatsConsumer(settings, store)
        if workers == 1:
            return consumer.run(
                stop=stop, duration_s=duration_s, on_started=lambda: tell(f"collecting {where}")
            )
        consumer.prepare()
    return _run_workers(
        settings,
        db_url,
        workers=workers,
        duration_s=duration_s,
        stop=stop,
        on_started=lambda: tell(f"collecting {where} with {workers} processes"),
    )


def _run_workers(
    settings: NatsCollectorSettings,
    db_url: str,
    *,
    workers: int,
    duration_s: float | None,
    stop: StopFlag | None,
    on_started: Callable[[], None],
) -> CollectorStats:
    ctx = mp.get_context("spawn")
    children_stop = ctx.Event()
    messages: Any = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(settings, db_url, children_stop, messages),
            name=f"edgekit-nats-collector-{i}",
            daemon=True,
        )
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    totals, reported = CollectorStats(), 0
    try:
        # Spawning re-imports edgekit in each child: allow for that beyond the connect timeout.
        _wait_started(messages, procs, time.monotonic() + 30 + 3 * settings.connect_timeout_s)
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
        deadline = time.monotonic() + 3 * settings.connect_timeout_s + settings.fetch_wait_s
        while reported < len(procs) and time.monotonic() < deadline:
            try:
                kind, payload = messages.get(timeout=_POLL_S)
            except queue.Empty:
                if all(p.exitcode is not None for p in procs):
                    break
                continue
            if kind == "stats":
                totals += CollectorStats(**payload)
                reported += 1
        for proc in procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()  # what it had not acknowledged is delivered to the others
    return totals


def _wait_started(messages: Any, procs: list[Any], deadline: float) -> None:
    started = 0
    while started < len(procs):
        if time.monotonic() > deadline:
            raise CollectorError("collector processes did not start in time")
        try:
            kind, payload = messages.get(timeout=_POLL_S)
        except queue.Empty:
            dead = [p for p in procs if p.exitcode is not None]
            if dead:
                raise CollectorError(
                    f"collector process {dead[0].name} exited ({dead[0].exitcode})"
                ) from None
            continue
        if kind == "error":
            raise CollectorError(payload)
        started += kind == "started"


def _worker(settings: NatsCollectorSettings, db_url: str, stop: StopFlag, messages: Any) -> None:
    # Ctrl-C reaches the whole process group; the parent decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    consumer = None
    try:
        with Store(db_url) as store:
            consumer = NatsConsumer(settings, store, set_up=False)
            consumer.run(stop=stop, on_started=lambda: messages.put(("started", None)))
    except EdgekitError as exc:
        messages.put(("error", str(exc)))
    finally:
        stats = consumer.stats if consumer is not None else CollectorStats()
        messages.put(("stats", dataclasses.asdict(stats)))
