"""The collector's MQTT side: subscribe, hand messages to the writer, acknowledge after commit.

Delivery is at least once end to end. The paho client runs with ``manual_ack=True`` in a persistent
session under a fixed client id, so a report the broker handed over is acknowledged (PUBACK) only
once the row it became (report, ignored duplicate, or rejection) is committed by the
:class:`~edgekit.collector.writer.Writer`. Whatever is still unacknowledged when the collector
stops is delivered again on its next connection. Repeats are harmless because the store drops
report message ids it already holds. The broker's in-flight window (MQTT 5 Receive Maximum, or
the broker's own limit for 3.1.1) bounds how much is held unacknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from edgekit.collector.settings import CollectorSettings
from edgekit.collector.stats import CollectorStats
from edgekit.collector.store import Store
from edgekit.collector.writer import POLL_S, Received, Writer
from edgekit.errors import CollectorError
from edgekit.mqtt import connect_kwargs, create_client
from edgekit.schema import utc_now

log = logging.getLogger(__name__)

# The collector's extra, named when paho-mqtt is missing.
_EXTRA = "collector"


class StopFlag(Protocol):
    """Anything with ``is_set()``: a threading or a multiprocessing Event."""

    def is_set(self) -> bool: ...


class Collector:
    """Subscribe to a fleet's reports and statuses and store them; use as a context manager."""

    def __init__(self, settings: CollectorSettings, store: Store) -> None:
        self.settings = settings
        self._accepting = False
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._failure: str | None = None
        # Bumped on every CONNACK: a message from an earlier connection is not acknowledged
        # (the broker delivers it again on the new one, and the store drops the repeat).
        self._generation = 0
        self._stats_lock = threading.Lock()
        self._stats = CollectorStats()
        self._writer = Writer(settings, store, acknowledge=self._acknowledge, count=self._count)
        self._client: Any = None
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Connect, subscribe and start storing; CollectorError if the broker cannot be used."""
        if self._started:
            raise CollectorError("a Collector starts once; make a new one to collect again")
        self._started = True
        self._client = self._make_client()
        self._accepting = True
        s = self.settings
        where, timeout = s.broker.url, s.timeout_s
        try:
            self._connect()
            if not self._connected.wait(timeout):
                raise CollectorError(f"no answer (CONNACK) from {where} within {timeout} s")
            if self._failure:
                raise CollectorError(self._failure)
            if not self._subscribed.wait(timeout):
                raise CollectorError(f"no SUBACK from {where} within {timeout} s")
            if self._failure:
                raise CollectorError(self._failure)
        except BaseException:
            self._shutdown_client()
            raise
        self._writer.start()
        log.info("collecting %s and %s from %s", s.report_filter, s.status_filter, where)

    def stop(self, *, timeout_s: float | None = None) -> None:
        """Store and acknowledge what has arrived, then disconnect; the rest is redelivered."""
        self._accepting = False  # later arrivals stay unacknowledged, for the next session
        wait = timeout_s if timeout_s is not None else self.settings.timeout_s * 3
        if not self._writer.stop(timeout_s=wait):
            log.warning("writer still busy at shutdown; unacknowledged messages will return")
        self._shutdown_client()

    def run(self, *, duration_s: float | None = None, stop: StopFlag | None = None) -> None:
        """Block until ``duration_s`` has passed or ``stop`` is set (the caller starts and
        stops the collector); raise the writer's error if it died."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while True:
            if self._writer.error is not None:
                raise CollectorError(f"collector writer failed: {self._writer.error}")
            if stop is not None and stop.is_set():
                return
            remaining = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if remaining <= 0:
                return
            time.sleep(remaining)

    @property
    def stats(self) -> CollectorStats:
        """A consistent copy of the counters."""
        with self._stats_lock:
            return self._stats

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            self._stats = self._stats.bump(**deltas)

    # -- MQTT --------------------------------------------------------------------------------

    def _make_client(self) -> Any:
        client = create_client(self.settings.broker, extra=_EXTRA, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _connect(self) -> None:
        s = self.settings
        kwargs = connect_kwargs(s.broker, extra=_EXTRA, receive_maximum=s.receive_maximum)
        address = s.broker.address
        try:
            self._client.connect(address.host, address.port, **kwargs)
        except (OSError, ValueError) as exc:
            raise CollectorError(f"cannot connect to MQTT broker {address}: {exc}") from exc
        self._client.loop_start()

    def _shutdown_client(self) -> None:
        if self._client is None:
            return
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
            self._client = None

    def _acknowledge(self, batch: list[Received]) -> int:
        """PUBACK the committed messages of the current connection; how many (writer thread)."""
        generation, client = self._generation, self._client
        acked = 0
        for m in batch:
            # No client: stop() gave up waiting and disconnected; the broker redelivers these.
            if client is not None and m.qos > 0 and m.generation == generation:
                client.ack(m.mid, m.qos)
                acked += 1
        return acked

    # paho callbacks, run on paho's network thread (signatures of CallbackAPIVersion.VERSION2).

    def _on_connect(
        self, client: Any, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        where = self.settings.broker.url
        if reason.is_failure:
            self._failure = f"broker {where} refused the connection: {reason}"
            self._connected.set()
            self._subscribed.set()
            client.disconnect()
            return
        self._generation += 1
        self._count(connections=1)
        if self.stats.connections > 1:
            log.warning("reconnected to %s", where)
        # Subscribing again is harmless when the session kept the subscriptions, and needed
        # when it expired.
        client.subscribe([(self.settings.report_filter, 1), (self.settings.status_filter, 1)])
        self._connected.set()

    def _on_subscribe(
        self, _client: Any, _userdata: Any, mid: int, reasons: list[Any], _props: Any
    ) -> None:
        filters = (self.settings.report_filter, self.settings.status_filter)
        refused = [f"{f} ({r})" for f, r in zip(filters, reasons, strict=False) if r.is_failure]
        if refused:
            self._failure = f"broker {self.settings.broker.url} refused {', '.join(refused)}"
        self._subscribed.set()

    def _on_disconnect(
        self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        # After a refused connection there is nothing to reconnect to: start() reports it.
        if self._accepting and self._failure is None:
            log.warning("disconnected from %s (%s); reconnecting", self.settings.broker.url, reason)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        if not self._accepting:
            return  # stopping: left unacknowledged, delivered again to the next session
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "<topic is not UTF-8>"
        self._writer.put(
            Received(
                topic=topic,
                payload=bytes(message.payload),
                mid=message.mid,
                qos=message.qos,
                retained=bool(message.retain),
                generation=self._generation,
                received_at=utc_now(),
            )
        )
