"""The collector's MQTT side: subscribe, hand messages to the store, acknowledge after commit.

Delivery is at least once end to end. The paho client runs with ``manual_ack=True`` in a persistent
session under a fixed client id, so a report the broker handed over is acknowledged (PUBACK) only
once the row it became (report, ignored duplicate, or rejection) is committed. If the database is
down, nothing is acknowledged: the writer retries with backoff, and whatever is still unacknowledged
when the collector stops is delivered again on its next connection. Repeats are harmless because
the store drops report message ids it already holds.

Two threads: paho's network loop only queues messages; one writer thread takes whatever has
arrived (up to a batch), commits it in one transaction, then sends the PUBACKs in arrival order.
Batching commits is what makes SQLite keep up; the broker's in-flight window (MQTT 5 Receive
Maximum, or the broker's own limit for 3.1.1) bounds how much is held unacknowledged.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from edgekit._optional import require
from edgekit.collector.broker_url import BrokerUrl
from edgekit.collector.intake import classify
from edgekit.collector.store import BatchResult, Store
from edgekit.errors import ReporterError, StoreError
from edgekit.mqtt_tls import configure_tls
from edgekit.schema import DEFAULT_PREFIX, utc_now
from edgekit.vocab import MqttVersion

log = logging.getLogger(__name__)

_FORBIDDEN_IN_NAMES = ("/", "+", "#")
# How often an idle writer wakes to look at the stop flag.
_POLL_S = 0.2


class StopFlag(Protocol):
    """Anything with ``is_set()``: a threading or a multiprocessing Event."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class CollectorSettings:
    """How the collector connects, subscribes and batches; every wait is bounded."""

    broker: BrokerUrl
    # Fixed, so the broker keeps this collector's session (and its unacknowledged messages)
    # across restarts. Each collector of a share group needs its own.
    client_id: str = "edgekit-collector"
    prefix: str = DEFAULT_PREFIX
    share_group: str | None = None
    mqtt_version: MqttVersion = MqttVersion.V5
    batch_size: int = 1000
    # MQTT 5: how many unacknowledged messages the broker may have in flight to us.
    receive_maximum: int = 1000
    session_expiry_s: int = 7 * 24 * 3600
    keepalive_s: int = 30
    timeout_s: float = 10.0
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30
    store_retry_max_s: float = 30.0
    # mqtts:// only: CA to verify the broker (system CAs when None), optional client certificate.
    ca_file: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None

    def __post_init__(self) -> None:
        if not self.client_id or len(self.client_id) > 128:
            raise ReporterError("client id must be 1 to 128 characters")
        if not self.prefix or any(c in self.prefix for c in ("+", "#")):
            raise ReporterError(f"topic prefix {self.prefix!r} must be non-empty, without + or #")
        if self.share_group is not None and (
            not self.share_group or any(c in self.share_group for c in _FORBIDDEN_IN_NAMES)
        ):
            raise ReporterError(
                f"share group {self.share_group!r} must be non-empty, without '/', '+' or '#'"
            )
        if not 1 <= self.batch_size <= 100_000:
            raise ReporterError("batch size must be 1..100000")
        if not 1 <= self.receive_maximum <= 65_535:
            raise ReporterError("receive maximum must be 1..65535")
        if self.timeout_s <= 0 or self.keepalive_s < 5:
            raise ReporterError("timeouts must be positive and keepalive at least 5 s")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ReporterError("reconnect delays must satisfy 0 < min <= max")

    @property
    def report_filter(self) -> str:
        """Subscription for reports, shared when a group is set."""
        plain = f"{self.prefix.rstrip('/')}/+/report"
        return f"$share/{self.share_group}/{plain}" if self.share_group else plain

    @property
    def status_filter(self) -> str:
        """Subscription for statuses; never shared, since brokers send retained messages
        only to plain subscriptions and every collector should know every device's state."""
        return f"{self.prefix.rstrip('/')}/+/status"


@dataclass(frozen=True, slots=True)
class CollectorStats:
    """Counts since the collector started."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    status_changes: int = 0
    rejected: int = 0
    acked: int = 0
    batches: int = 0
    store_failures: int = 0
    connections: int = 0


@dataclass(frozen=True, slots=True)
class _Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    retained: bool
    generation: int
    received_at: datetime


class Collector:
    """Subscribe to a fleet's reports and statuses and store them; use as a context manager."""

    def __init__(self, settings: CollectorSettings, store: Store) -> None:
        self.settings = settings
        self._store = store
        self._queue: queue.SimpleQueue[_Received] = queue.SimpleQueue()
        self._accepting = False
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._failure: str | None = None
        self._pending_subscriptions: set[int] = set()
        # Bumped on every CONNACK: a message from an earlier connection is not acknowledged
        # (the broker delivers it again on the new one, and the store drops the repeat).
        self._generation = 0
        self._stats_lock = threading.Lock()
        self._stats = CollectorStats()
        self._writer: threading.Thread | None = None
        self._client: Any = None
        self._writer_error: BaseException | None = None
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Connect, subscribe and start storing; ReporterError if the broker cannot be used."""
        if self._started:
            raise ReporterError("a Collector starts once; make a new one to collect again")
        self._started = True
        self._client = self._make_client()
        self._accepting = True
        s = self.settings
        try:
            self._connect()
            if not self._connected.wait(s.timeout_s):
                raise ReporterError(f"no answer (CONNACK) from {s.broker} within {s.timeout_s} s")
            if self._failure:
                raise ReporterError(self._failure)
            if not self._subscribed.wait(s.timeout_s):
                raise ReporterError(f"no SUBACK from {s.broker} within {s.timeout_s} s")
            if self._failure:
                raise ReporterError(self._failure)
        except BaseException:
            self._shutdown_client()
            raise
        self._writer = threading.Thread(
            target=self._write_loop, name="edgekit-collector-writer", daemon=True
        )
        self._writer.start()
        log.info("collecting %s and %s from %s", s.report_filter, s.status_filter, s.broker)

    def stop(self, *, timeout_s: float | None = None) -> None:
        """Store and acknowledge what has arrived, then disconnect; the rest is redelivered."""
        self._accepting = False  # later arrivals stay unacknowledged, for the next session
        self._stop.set()
        if self._writer is not None:
            self._writer.join(timeout_s if timeout_s is not None else self.settings.timeout_s * 3)
            if self._writer.is_alive():
                log.warning("writer still busy at shutdown; unacknowledged messages will return")
        self._shutdown_client()

    def run(self, *, duration_s: float | None = None, stop: StopFlag | None = None) -> None:
        """Block until ``duration_s`` has passed or ``stop`` is set (the caller starts and
        stops the collector); raise the writer's error if it died."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while True:
            if self._writer_error is not None:
                raise ReporterError(f"collector writer failed: {self._writer_error}")
            if stop is not None and stop.is_set():
                return
            remaining = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            if remaining <= 0:
                return
            time.sleep(remaining)

    @property
    def stats(self) -> CollectorStats:
        """A consistent copy of the counters."""
        with self._stats_lock:
            return self._stats

    # -- MQTT --------------------------------------------------------------------------------

    def _make_client(self) -> Any:
        mqtt = require("paho.mqtt.client", extra="collector", package="paho-mqtt")
        s = self.settings
        v5 = s.mqtt_version is MqttVersion.V5
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            # MQTT 3.1.1 keeps the session with clean_session=False; MQTT 5 uses clean_start
            # and the session expiry interval given at connect.
            clean_session=None if v5 else False,
            manual_ack=True,
            reconnect_on_failure=True,
        )
        client.connect_timeout = s.timeout_s
        client.reconnect_delay_set(min_delay=s.reconnect_min_s, max_delay=s.reconnect_max_s)
        if s.broker.username is not None:
            client.username_pw_set(s.broker.username, s.broker.password)
        if s.broker.tls:
            configure_tls(
                client,
                where=str(s.broker),
                ca_file=s.ca_file,
                certfile=s.certfile,
                keyfile=s.keyfile,
            )
        elif s.ca_file or s.certfile or s.keyfile:
            raise ReporterError(f"TLS files given for a plain mqtt:// broker ({s.broker})")
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _connect(self) -> None:
        s = self.settings
        kwargs: dict[str, Any] = {}
        if s.mqtt_version is MqttVersion.V5:
            props = require("paho.mqtt.properties", extra="collector", package="paho-mqtt")
            packets = require("paho.mqtt.packettypes", extra="collector", package="paho-mqtt")
            properties = props.Properties(packets.PacketTypes.CONNECT)
            properties.SessionExpiryInterval = s.session_expiry_s
            properties.ReceiveMaximum = s.receive_maximum
            kwargs = {"clean_start": False, "properties": properties}
        try:
            self._client.connect(s.broker.host, s.broker.port, s.keepalive_s, **kwargs)
        except (OSError, ValueError) as exc:
            raise ReporterError(f"cannot connect to MQTT broker {s.broker}: {exc}") from exc
        self._client.loop_start()

    def _shutdown_client(self) -> None:
        if self._client is None:
            return
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
            self._client = None

    def _on_connect(
        self, client: Any, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            self._failure = f"broker {self.settings.broker} refused the connection: {reason}"
            self._connected.set()
            self._subscribed.set()
            client.disconnect()
            return
        self._generation += 1
        with self._stats_lock:
            self._stats = _bump(self._stats, connections=1)
        if self._stats.connections > 1:
            log.warning("reconnected to %s", self.settings.broker)
        # Subscribing again is harmless when the session kept the subscriptions, and needed
        # when it expired.
        _, mid = client.subscribe(
            [(self.settings.report_filter, 1), (self.settings.status_filter, 1)]
        )
        self._pending_subscriptions.add(mid)
        self._connected.set()

    def _on_subscribe(
        self, _client: Any, _userdata: Any, mid: int, reasons: list[Any], _props: Any
    ) -> None:
        filters = (self.settings.report_filter, self.settings.status_filter)
        refused = [f"{f} ({r})" for f, r in zip(filters, reasons, strict=False) if r.is_failure]
        if refused:
            self._failure = f"broker {self.settings.broker} refused {', '.join(refused)}"
        self._pending_subscriptions.discard(mid)
        self._subscribed.set()

    def _on_disconnect(
        self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        # After a refused connection there is nothing to reconnect to: start() reports it.
        if self._accepting and self._failure is None:
            log.warning("disconnected from %s (%s); reconnecting", self.settings.broker, reason)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        if not self._accepting:
            return  # stopping: left unacknowledged, delivered again to the next session
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "<topic is not UTF-8>"
        self._queue.put(
            _Received(
                topic=topic,
                payload=bytes(message.payload),
                mid=message.mid,
                qos=message.qos,
                retained=bool(message.retain),
                generation=self._generation,
                received_at=utc_now(),
            )
        )

    # -- storing -----------------------------------------------------------------------------

    def _write_loop(self) -> None:
        try:
            while True:
                batch = self._take_batch()
                if batch is None:
                    return
                if batch:
                    self._store_and_ack(batch)
        except BaseException as exc:  # surfaced by run(); the broker redelivers what is unacked
            log.exception("collector writer stopped")
            self._writer_error = exc

    def _take_batch(self) -> list[_Received] | None:
        """What has arrived, up to a batch; waits only for the first message."""
        try:
            first = self._queue.get(timeout=_POLL_S)
        except queue.Empty:
            return None if self._stop.is_set() else []
        batch = [first]
        while len(batch) < self.settings.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _store_and_ack(self, batch: list[_Received]) -> None:
        prefix = self.settings.prefix.rstrip("/")
        items = [
            classify(
                m.topic, m.payload, prefix=prefix, retained=m.retained, received_at=m.received_at
            )
            for m in batch
        ]
        result = self._commit(items)
        if result is None:
            return
        generation, client = self._generation, self._client
        acked = 0
        for m in batch:
            # No client: stop() gave up waiting and disconnected; the broker redelivers these.
            if client is not None and m.qos > 0 and m.generation == generation:
                client.ack(m.mid, m.qos)
                acked += 1
        with self._stats_lock:
            self._stats = _bump(
                self._stats,
                received=len(batch),
                stored=result.stored,
                duplicates=result.duplicates,
                status_changes=result.status_changes,
                rejected=result.rejected,
                acked=acked,
                batches=1,
            )

    def _commit(self, items: list[Any]) -> BatchResult | None:
        """Commit, retrying with backoff while the database is down; None if stopped first."""
        delay = 0.5
        failing = False
        while True:
            try:
                result = self._store.add_batch(items)
            except StoreError as exc:
                with self._stats_lock:
                    self._stats = _bump(self._stats, store_failures=1)
                if not failing:
                    log.warning("database unavailable, not acknowledging, retrying: %s", exc)
                    failing = True
                if self._stop.wait(delay):
                    log.warning(
                        "stopped during a database outage; %d messages stay unacked", len(items)
                    )
                    return None
                delay = min(delay * 2, self.settings.store_retry_max_s)
                continue
            if failing:
                log.warning("database back; storing again")
            return result


def _bump(stats: CollectorStats, **deltas: int) -> CollectorStats:
    return dataclasses.replace(stats, **{k: getattr(stats, k) + v for k, v in deltas.items()})
