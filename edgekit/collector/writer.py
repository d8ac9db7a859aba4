"""The collector's writer thread: commit what has arrived in one transaction, then acknowledge it.

paho's network thread only queues messages; this thread takes whatever has arrived (up to a
batch), commits it, then has the PUBACKs sent in arrival order. Batching commits is what makes
SQLite keep up. If the database is down nothing is acknowledged: the commit is retried with
backoff, and what is still unacknowledged when the collector stops is delivered again.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from edgekit.collector.intake import Intake, classify
from edgekit.collector.settings import CollectorSettings
from edgekit.collector.store import BatchResult, Store
from edgekit.errors import StoreError

log = logging.getLogger(__name__)

# How often an idle writer wakes to look at the stop flag.
POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class Received:
    """One message as paho handed it over, with the connection it came on."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retained: bool
    generation: int
    received_at: datetime


class Writer:
    """Stores batches of :class:`Received` messages; ``acknowledge`` sends their PUBACKs and
    returns how many it sent, ``count`` adds to the collector's counters."""

    def __init__(
        self,
        settings: CollectorSettings,
        store: Store,
        *,
        acknowledge: Callable[[list[Received]], int],
        count: Callable[..., None],
    ) -> None:
        self._settings = settings
        self._store = store
        self._acknowledge = acknowledge
        self._count = count
        self._queue: queue.SimpleQueue[Received] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="edgekit-collector-writer", daemon=True
        )
        self.error: BaseException | None = None
        """Why the thread died, if it did; the broker redelivers what it had not acknowledged."""

    def put(self, message: Received) -> None:
        """Queue a message (paho's thread)."""
        self._queue.put(message)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, *, timeout_s: float) -> bool:
        """Store and acknowledge what has arrived, then end; False if still busy at the timeout."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        try:
            while True:
                batch = self._take_batch()
                if batch is None:
                    return
                if batch:
                    self._store_and_ack(batch)
        except BaseException as exc:  # surfaced by Collector.run()
            log.exception("collector writer stopped")
            self.error = exc

    def _take_batch(self) -> list[Received] | None:
        """What has arrived, up to a batch; waits only for the first message."""
        try:
            first = self._queue.get(timeout=POLL_S)
        except queue.Empty:
            return None if self._stop.is_set() else []
        batch = [first]
        while len(batch) < self._settings.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _store_and_ack(self, batch: list[Received]) -> None:
        prefix = self._settings.prefix
        items = [
            classify(
                m.topic, m.payload, prefix=prefix, retained=m.retained, received_at=m.received_at
            )
            for m in batch
        ]
        result = self._commit(items)
        if result is None:
            return
        acked = self._acknowledge(batch)
        self._count(
            received=len(batch),
            stored=result.stored,
            duplicates=result.duplicates,
            status_changes=result.status_changes,
            rejected=result.rejected,
            acked=acked,
            batches=1,
        )

    def _commit(self, items: list[Intake]) -> BatchResult | None:
        """Commit, retrying with backoff while the database is down; None if stopped first."""
        delay = 0.5
        failing = False
        while True:
            try:
                result = self._store.add_batch(items)
            except StoreError as exc:
                self._count(store_failures=1)
                if not failing:
                    log.warning("database unavailable, not acknowledging, retrying: %s", exc)
                    failing = True
                if self._stop.wait(delay):
                    log.warning(
                        "stopped during a database outage; %d messages stay unacked", len(items)
                    )
                    return None
                delay = min(delay * 2, self._settings.store_retry_max_s)
                continue
            if failing:
                log.warning("database back; storing again")
            return result
