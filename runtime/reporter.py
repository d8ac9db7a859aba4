"""The device's MQTT reporter: publishes what the outbox holds and forgets it on PUBACK.

    with Reporter(BrokerSettings.from_url(url, client_id=...), outbox, device_id=...) as reporter:
        outbox.put(report.message_id, reporter.report_topic, report.to_json())
        reporter.publish_report(report)
        reporter.flush(timeout=5.0)

The paho-mqtt client is private. MQTT v5 with a fixed client id, ``clean_start=False`` and a
session expiry interval, so the broker keeps the session across reconnects; QoS 1 throughout.
``<prefix>/<device_id>/status`` is retained: ``online`` is published on every connect and
``offline`` is the Last Will (and is published on a clean close).

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
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from pydantic import TypeAdapter, ValidationError

from edgekit._optional import require
from edgekit.errors import ReporterError
from edgekit.mqtt_tls import configure_tls
from edgekit.runtime.outbox import Entry, Outbox
from edgekit.schema import (
    DEFAULT_PREFIX,
    STATUS_OFFLINE,
    STATUS_ONLINE,
    DeviceId,
    Report,
    report_topic,
    status_topic,
)

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# CONNACK reason codes (MQTT v5; paho maps v3.1.1 return codes onto them) after which retrying
# with the same settings cannot succeed. Mosquitto answers a wrong password with 0x87.
_FATAL_CONNACK = {
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad username or password",
    0x87: "bad username or password (not authorized)",
    0x8A: "this client is banned",
    0x8C: "bad authentication method",
}
_DEVICE_ID = TypeAdapter(DeviceId)


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how the reporter connects; build it with :meth:`from_url`."""

    host: str
    client_id: str
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # TLS only: CA bundle to verify the broker (system CAs when None) and an optional client
    # certificate with its key for brokers that authenticate devices by certificate.
    ca_file: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    keepalive: int = 60
    prefix: str = DEFAULT_PREFIX
    # How long the broker keeps the session after the connection drops.
    session_expiry: int = 7 * 24 * 3600
    connect_timeout: float = 5.0
    # Reconnect backoff doubles from min to max, in whole seconds (paho's granularity).
    reconnect_min_delay: int = 1
    reconnect_max_delay: int = 60
    # "5" by default; "3.1.1" for brokers without MQTT 5 (amqtt, the embedded broker). The
    # session is persistent either way (clean_session=False on 3.1.1).
    mqtt_version: str = "5"

    def __post_init__(self) -> None:
        problems = []
        if self.mqtt_version not in ("5", "3.1.1"):
            problems.append(f"MQTT version {self.mqtt_version!r} is not 5 or 3.1.1")
        if not self.host:
            problems.append("no host")
        if not 1 <= self.port <= 65535:
            problems.append(f"port {self.port} is not between 1 and 65535")
        if (
            not self.client_id
            or any(c in self.client_id for c in "/+#")
            or (len(self.client_id.encode()) > 65535)
        ):
            problems.append(f"client id {self.client_id!r} must be non-empty without / + #")
        if self.password is not None and self.username is None:
            problems.append("a password without a username")
        if not self.tls and (self.ca_file or self.certfile or self.keyfile):
            problems.append("TLS files given for a plain mqtt:// broker (use mqtts://)")
        if self.keyfile is not None and self.certfile is None:
            problems.append("a client keyfile without its certfile")
        if not 0 <= self.keepalive <= 65535:
            problems.append(f"keepalive {self.keepalive} is not between 0 and 65535 seconds")
        if (
            not self.prefix
            or self.prefix.startswith("/")
            or self.prefix.endswith("/")
            or any(c in self.prefix for c in "+#")
        ):
            problems.append(f"topic prefix {self.prefix!r} must not be empty, start or end with")
            problems[-1] += " '/', or contain + or #"
        if self.session_expiry < 0 or self.connect_timeout <= 0:
            problems.append("session expiry must be >= 0 and connect timeout > 0")
        if not 1 <= self.reconnect_min_delay <= self.reconnect_max_delay:
            problems.append("reconnect delays must satisfy 1 <= min <= max")
        if problems:
            raise ReporterError(f"invalid broker settings for {self.url}: {'; '.join(problems)}")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        client_id: str,
        ca_file: str | Path | None = None,
        certfile: str | Path | None = None,
        keyfile: str | Path | None = None,
        keepalive: int = 60,
        prefix: str = DEFAULT_PREFIX,
        session_expiry: int = 7 * 24 * 3600,
        connect_timeout: float = 5.0,
        reconnect_min_delay: int = 1,
        reconnect_max_delay: int = 60,
        mqtt_version: str = "5",
    ) -> BrokerSettings:
        """Parse ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...``."""
        shown = _redact(url)
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ReporterError(
                f"broker URL {shown!r} must start with mqtt:// or mqtts://"
                + (f", not {parts.scheme}://" if parts.scheme else "")
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ReporterError(
                f"broker URL {shown!r} must be scheme://[user[:password]@]host[:port] with no "
                "path, query or fragment (TLS files are given as ca_file, certfile, keyfile)"
            )
        if not parts.hostname:
            raise ReporterError(f"broker URL {shown!r} has no host")
        try:
            port = parts.port
        except ValueError as exc:
            raise ReporterError(
                f"broker URL {shown!r} has a bad port: {str(exc).removeprefix('Port ')}"
            ) from exc
        return cls(
            host=parts.hostname,
            port=port if port is not None else _DEFAULT_PORTS[scheme],
            tls=scheme == "mqtts",
            # mqtt://:pw@host has an empty user name: treated as none, so it is refused below.
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password is not None else None,
            client_id=client_id,
            ca_file=Path(ca_file) if ca_file is not None else None,
            certfile=Path(certfile) if certfile is not None else None,
            keyfile=Path(keyfile) if keyfile is not None else None,
            keepalive=keepalive,
            prefix=prefix,
            session_expiry=session_expiry,
            connect_timeout=connect_timeout,
            reconnect_min_delay=reconnect_min_delay,
            reconnect_max_delay=reconnect_max_delay,
            mqtt_version=mqtt_version,
        )

    @property
    def url(self) -> str:
        """The broker's URL without the password, for messages."""
        user = f"{urllib.parse.quote(self.username, safe='')}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


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
        self.report_topic = report_topic(device_id, settings.prefix)
        """The topic reports of this device go to; put them in the outbox with it."""
        self.status_topic = status_topic(device_id, settings.prefix)
        self._client: Any = None
        self._mqtt: ModuleType | None = None
        # Guards the bookkeeping below; never held while calling paho, whose network thread
        # holds paho's own lock while it runs on_publish (holding both would deadlock).
        self._lock = threading.Lock()
        self._in_flight: dict[int, str | None] = {}  # mid -> message id (None: a status)
        self._in_flight_ids: set[str] = set()
        # PUBACKs that arrived before publish() returned their mid to us: mid -> success.
        self._early_acks: dict[int, bool] = {}
        self._progress = threading.Condition()
        self._first_outcome = threading.Event()
        self._started = False
        self._connected = False
        self._closing = False
        self._last_error: str | None = None
        self._first_connect_error: str | None = None
        self._fatal: ReporterError | None = None
        self._callback_error: ReporterError | None = None

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
        mqtt = require("paho.mqtt.client", extra="device", package="paho-mqtt")
        self._mqtt = mqtt
        client = self._make_client(mqtt)
        connect_args = self._connect_args(mqtt)
        try:
            # One synchronous attempt, so the reason of a failure (refused, DNS, TLS) is known;
            # paho's reconnect loop does not report it.
            client.connect(s.host, s.port, **connect_args)
        except UnicodeError as exc:
            raise ReporterError(f"broker host {s.host!r} is not a valid host name") from exc
        except OSError as exc:
            self._first_connect_error = str(exc) or type(exc).__name__
            self._last_error = f"cannot connect to {s.url}: {self._first_connect_error}"
            self._first_outcome.set()
            client.connect_async(s.host, s.port, **connect_args)
        self._client = client
        client.loop_start()
        self._first_outcome.wait(s.connect_timeout)
        if self._fatal is not None:
            self._stop(deadline=time.monotonic() + s.connect_timeout)
            raise self._fatal
        if not self._connected and self._last_error is None:
            self._last_error = f"no answer from {s.url} within {s.connect_timeout:g} s"
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

    def _make_client(self, mqtt: ModuleType) -> Any:
        s = self.settings
        if s.mqtt_version == "3.1.1":
            client = mqtt.Client(
                callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                client_id=s.client_id,
                protocol=mqtt.MQTTv311,
                clean_session=False,
            )
        else:
            client = mqtt.Client(
                callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                client_id=s.client_id,
                protocol=mqtt.MQTTv5,
            )
        client.connect_timeout = s.connect_timeout
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            configure_tls(
                client, where=s.url, ca_file=s.ca_file, certfile=s.certfile, keyfile=s.keyfile
            )
        client.will_set(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(s.reconnect_min_delay, s.reconnect_max_delay)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _connect_args(self, mqtt: ModuleType) -> dict[str, Any]:
        if self.settings.mqtt_version == "3.1.1":
            return {"keepalive": self.settings.keepalive}
        properties = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.settings.session_expiry
        return {
            "keepalive": self.settings.keepalive,
            "clean_start": False,
            "properties": properties,
        }

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
        if mqtt is None or client is None:
            return False
        with self._lock:
            # Reserved before publishing, so a resend on reconnect and the caller's publish
            # cannot both send it.
            if entry.message_id in self._in_flight_ids:
                return False
            self._in_flight_ids.add(entry.message_id)
        try:
            info = client.publish(entry.topic, entry.payload, qos=1)
        except ValueError as exc:
            with self._lock:
                self._in_flight_ids.discard(entry.message_id)
            raise ReporterError(f"cannot publish report {entry.message_id}: {exc}") from exc
        # NO_CONN: the connection dropped just now; paho keeps the message and resends it.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            with self._lock:
                self._in_flight_ids.discard(entry.message_id)
            return False
        self._register(info.mid, entry.message_id)
        return True

    def _register(self, mid: int, message_id: str | None) -> None:
        with self._lock:
            acked = self._early_acks.pop(mid, None)
            if acked is None:
                self._in_flight[mid] = message_id
                return
        self._acknowledged(message_id, success=acked, reason="")

    def _acknowledged(self, message_id: str | None, *, success: bool, reason: str) -> None:
        if message_id is not None:
            with self._lock:
                self._in_flight_ids.discard(message_id)
            if success:
                try:
                    self.outbox.remove(message_id)
                except ReporterError as exc:
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
            why = _FATAL_CONNACK.get(reason_code.value)
            self._last_error = f"broker refused the connection: {why or reason_code.getName()}"
            if why is not None:
                user = f" as user {self.settings.username!r}" if self.settings.username else ""
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
            except ReporterError as exc:
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
        with self._lock:
            if mid not in self._in_flight:
                self._early_acks[mid] = success
                return
            message_id = self._in_flight.pop(mid)
        self._acknowledged(message_id, success=success, reason=reason_code.getName())


def _redact(url: str) -> str:
    """The URL with any password replaced by ***, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
