"""The device's MQTT reporter: publishes what the outbox holds and forgets it on PUBACK.

    settings = BrokerSettings.from_url(url, session=SessionOptions(client_id="edgekit-pi-01"))
    with Reporter(settings, outbox, device_id="pi-01") as reporter:
        outbox.put(report.message_id, reporter.report_topic, report.to_json())
        reporter.publish_report(report)
        reporter.flush(timeout=5.0)

The paho-mqtt client is private; it is made by :func:`edgekit.mqtt.create_client` from the
shared settings. A persistent session under a fixed client id, so the broker keeps it across
reconnects; QoS 1 throughout. ``<prefix>/<device_id>/status`` is retained: ``online`` is
published on every connect and ``offline`` is the Last Will (and is published on a clean close).

Connection policy:

- Broker unreachable (at start or later): nothing raises. paho's network thread reconnects with
  capped exponential backoff; :attr:`Reporter.connected` and :attr:`Reporter.last_error` tell the
  caller what is going on, and reports wait in the outbox.
- Broker refuses the connection for a reason retrying cannot fix (bad credentials, not
  authorized, client id rejected, banned): the reporter stops reconnecting, so a device with a
  wrong password does not hammer the broker, and raises :class:`~edgekit.errors.ReporterError`
  from ``__enter__`` or from the next ``publish_report``/``flush``.
- On every (re)connect all outbox entries not already in flight are resent. A PUBACK with a
  failure reason code (MQTT v5) leaves the entry in the outbox for the next resend.
"""

from __future__ import annotations

import contextlib
import threading
import time
from types import ModuleType, TracebackType
from typing import Any

from pydantic import TypeAdapter, ValidationError

from edgekit.errors import EdgekitError, ReporterError
from edgekit.mqtt import BrokerSettings, Will, connect_kwargs, create_client
from edgekit.mqtt.client import paho
from edgekit.mqtt.reasons import fatal_refusal
from edgekit.runtime.inflight import InFlight
from edgekit.runtime.outbox import Entry, Outbox
from edgekit.schema import (
    STATUS_OFFLINE,
    STATUS_ONLINE,
    DeviceId,
    Report,
    report_topic,
    status_topic,
)

_DEVICE_ID = TypeAdapter(DeviceId)
# The board's extra, named when paho-mqtt is missing.
_EXTRA = "device"


class Reporter:
    """Publishes the outbox's reports over MQTT (QoS 1) and removes each on its PUBACK."""

    def __init__(self, settings: BrokerSettings, outbox: Outbox, *, device_id: str) -> None:
        try:
            _DEVICE_ID.validate_python(device_id)
        except ValidationError as exc:
            raise ReporterError(
                f"device id {device_id!r} is not topic-safe (letters, digits, _ . : -)"
            ) from exc
        self.settings = settings
        self.outbox = outbox
        self.device_id = device_id
        prefix = settings.session.prefix
        self.report_topic = report_topic(device_id, prefix)
        """The topic reports of this device go to; put them in the outbox with it."""
        self.status_topic = status_topic(device_id, prefix)
        self._client: Any = None
        self._mqtt: ModuleType | None = None
        self._in_flight = InFlight()
        self._progress = threading.Condition()
        self._first_outcome = threading.Event()
        self._started = False
        self._connected = False
        self._closing = False
        self._last_error: str | None = None
        self._first_connect_error: str | None = None
        self._fatal: ReporterError | None = None
        # Raised on paho's thread (an outbox write in a callback): handed to the next call.
        self._callback_error: EdgekitError | None = None

    @property
    def connected(self) -> bool:
        """Whether the broker has accepted the connection and it is still up."""
        return self._connected

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed or the connection dropped, for a warning."""
        return self._last_error

    def __enter__(self) -> Reporter:
        if self._started:
            raise ReporterError("a Reporter runs once; make a new one to reconnect")
        self._started = True
        s = self.settings
        self._mqtt = paho(extra=_EXTRA)
        client = self._make_client()
        args = connect_kwargs(s, extra=_EXTRA)
        host, port, url = s.address.host, s.address.port, s.url
        try:
            # One synchronous attempt, so the reason of a failure (refused, DNS, TLS) is known;
            # paho's reconnect loop does not report it.
            client.connect(host, port, **args)
        except UnicodeError as exc:
            raise ReporterError(f"broker host {host!r} is not a valid host name") from exc
        except OSError as exc:
            self._first_connect_error = str(exc) or type(exc).__name__
            self._last_error = f"cannot connect to {url}: {self._first_connect_error}"
            self._first_outcome.set()
            client.connect_async(host, port, **args)
        self._client = client
        client.loop_start()
        timeout = s.session.connect_timeout_s
        self._first_outcome.wait(timeout)
        if self._fatal is not None:
            self._stop(deadline=time.monotonic() + timeout)
            raise self._fatal
        if not self._connected and self._last_error is None:
            self._last_error = f"no answer from {url} within {timeout:g} s"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def publish_report(self, report: Report) -> bool:
        """Publish a report the caller has already put in the outbox; True if it was sent now.

        False when it waits for the broker (it goes out on reconnect) or when the outbox no
        longer holds it (already acknowledged, or dropped).
        """
        return self.publish_id(report.message_id)

    def publish_id(self, message_id: str) -> bool:
        """Publish the outbox entry ``message_id``; as :meth:`publish_report`."""
        self._check()
        entry = self.outbox.get(message_id)
        if entry is None or not self._connected:
            return False
        return self._send(entry)

    def flush(self, timeout: float) -> int:
        """Send everything pending, wait up to ``timeout`` seconds for PUBACKs; return how many
        are still pending."""
        self._check()
        deadline = time.monotonic() + timeout
        if self._connected:
            self._resend_pending()
        with self._progress:
            while True:
                self._check()
                remaining = deadline - time.monotonic()
                pending = len(self.outbox)
                if pending == 0 or remaining <= 0:
                    return pending
                self._progress.wait(remaining)

    def close(self, *, timeout: float = 5.0) -> None:
        """Publish ``offline`` (retained), disconnect and stop the network thread."""
        if self._client is None:
            return
        deadline = time.monotonic() + timeout
        self._closing = True
        offline_sent = False
        if self._connected and self._fatal is None:
            info = self._client.publish(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
            self._register(info.mid, None)
            with contextlib.suppress(RuntimeError, ValueError):  # not sent: see _stop
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                offline_sent = info.is_published()
        self._stop(deadline=deadline, with_will=not offline_sent)

    def _stop(self, *, deadline: float, with_will: bool = False) -> None:
        client, self._client = self._client, None
        self._connected = False
        mqtt = self._mqtt
        if with_will and mqtt is not None:
            # A normal DISCONNECT discards the Last Will; when our own 'offline' was not
            # acknowledged, ask the broker to publish the Will instead (MQTT v5 reason 0x04).
            client.disconnect(reasoncode=mqtt.ReasonCode(mqtt.PacketTypes.DISCONNECT, identifier=4))
        else:
            client.disconnect()
        # loop_stop() joins paho's thread without a timeout; the thread may be inside a
        # blocking connect. Join through a helper so this wait is bounded; paho's thread is a
        # daemon thread and cannot keep the process alive.
        stopper = threading.Thread(target=client.loop_stop, name="edgekit-mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(max(0.0, deadline - time.monotonic()))

    def _check(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._callback_error is not None:
            error, self._callback_error = self._callback_error, None
            raise error
        if self._client is None:
            raise ReporterError("the reporter is not running; use it as `with Reporter(...)`")

    def _make_client(self) -> Any:
        client = create_client(
            self.settings, extra=_EXTRA, will=Will(self.status_topic, STATUS_OFFLINE)
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _resend_pending(self) -> None:
        first_error: ReporterError | None = None
        for entry in self.outbox.pending(self.outbox.max_messages):
            if not self._connected:
                break
            try:
                self._send(entry)
            except ReporterError as exc:
                # One entry paho will not take must not hold back the others.
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    def _send(self, entry: Entry) -> bool:
        mqtt, client = self._mqtt, self._client
        if mqtt is None or client is None or not self._in_flight.reserve(entry.message_id):
            return False
        try:
            info = client.publish(entry.topic, entry.payload, qos=1)
        except ValueError as exc:
            self._in_flight.release(entry.message_id)
            raise ReporterError(f"cannot publish report {entry.message_id}: {exc}") from exc
        # NO_CONN: the connection dropped just now; paho keeps the message and resends it.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._in_flight.release(entry.message_id)
            return False
        self._register(info.mid, entry.message_id)
        return True

    def _register(self, mid: int, message_id: str | None) -> None:
        acked = self._in_flight.register(mid, message_id)
        if acked is not None:
            self._acknowledged(message_id, success=acked, reason="")

    def _acknowledged(self, message_id: str | None, *, success: bool, reason: str) -> None:
        if message_id is not None:
            self._in_flight.release(message_id)
            if success:
                try:
                    self.outbox.remove(message_id)
                except EdgekitError as exc:
                    # Runs on paho's thread: hand the error to the caller's next call.
                    self._callback_error = exc
            else:
                self._last_error = f"broker refused report {message_id}: {reason}"
        with self._progress:
            self._progress.notify_all()

    # paho callbacks, run on paho's network thread (signatures of CallbackAPIVersion.VERSION2).

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            why = fatal_refusal(reason_code)
            self._last_error = f"broker refused the connection: {why or reason_code.getName()}"
            if why is not None:
                username = self.settings.address.username
                user = f" as user {username!r}" if username else ""
                self._fatal = ReporterError(
                    f"broker refused the connection: {why} ({self.settings.url}{user})"
                )
                client.disconnect()  # stops paho's reconnect loop
        else:
            self._connected = True
            self._last_error = None
            info = client.publish(self.status_topic, STATUS_ONLINE, qos=1, retain=True)
            self._register(info.mid, None)
            try:
                self._resend_pending()
            except EdgekitError as exc:
                self._callback_error = exc
        self._first_outcome.set()
        with self._progress:
            self._progress.notify_all()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        # paho does not pass the reason; the first, synchronous attempt's is the best we have.
        detail = f" (at start: {self._first_connect_error})" if self._first_connect_error else ""
        self._last_error = f"cannot connect to {self.settings.url}{detail}"
        self._first_outcome.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        was_connected, self._connected = self._connected, False
        if was_connected and not self._closing:
            self._last_error = f"connection to {self.settings.url} lost: {reason_code.getName()}"
        with self._progress:
            self._progress.notify_all()

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        success = not reason_code.is_failure
        known, message_id = self._in_flight.acknowledge(mid, success=success)
        if known:
            self._acknowledged(message_id, success=success, reason=reason_code.getName())
