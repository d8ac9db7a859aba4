"""A real Mosquitto per test, and a real paho subscriber to see what arrives.

Registered as a pytest plugin from conftest.py. Each broker runs on a free port with a config
written into tmp_path, so a test can stop and restart it; it is killed at teardown. Persistence
is on (saved on a clean stop), so retained messages and persistent sessions survive a restart
as they would on a production broker.
"""

from __future__ import annotations

import os
import pwd
import queue
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = "mosquitto"
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Credentials:
    """A user the broker's password file knows."""

    username: str
    password: str


@dataclass(frozen=True)
class TlsFiles:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=30
    )


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (EC P-256, valid two days): (certificate, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    return cert, key


def _issue(folder: Path, ca: tuple[Path, Path], name: str, extensions: str) -> tuple[Path, Path]:
    cert, key, csr = folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr"
    ext = folder / f"{name}.ext"
    ext.write_text(extensions + "\n")
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext,
        cwd=folder,
    )  # fmt: skip
    return cert, key


def make_tls_files(folder: Path) -> TlsFiles:
    """Certificates for a TLS broker on 127.0.0.1 that also wants a client certificate."""
    ca = make_ca(folder, "test-ca")
    server = _issue(
        folder, ca, "server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"
    )
    client = _issue(folder, ca, "device", "extendedKeyUsage=clientAuth")
    return TlsFiles(ca[0], server[0], server[1], client[0], client[1])


class MosquittoBroker:
    """One mosquitto process with its own config; stop() and start() keep port and data."""

    def __init__(
        self, folder: Path, *, credentials: Credentials | None = None, tls: TlsFiles | None = None
    ) -> None:
        self.host = HOST
        self.port = free_port()
        self.credentials = credentials
        self.tls = tls
        self.folder = folder
        self.log = folder / "mosquitto.log"
        self.conf = folder / "mosquitto.conf"
        self._process: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} {HOST}",
            "persistence true",
            f"persistence_location {folder}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            # As root mosquitto would switch to the 'mosquitto' user, who cannot read tmp_path.
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        if tls is not None:
            lines += [
                f"cafile {tls.ca}",
                f"certfile {tls.server_cert}",
                f"keyfile {tls.server_key}",
                "require_certificate true",
            ]
        self.password_file = folder / "passwords"
        if credentials is None:
            lines.append("allow_anonymous true")
        else:
            self.set_password(credentials)
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        self.conf.write_text("\n".join(lines) + "\n")

    def set_password(self, credentials: Credentials) -> None:
        """Make the password file hold only this user; a running broker reads it on restart."""
        subprocess.run(
            [
                "mosquitto_passwd",
                "-b",
                "-c",
                str(self.password_file),
                credentials.username,
                credentials.password,
            ],
            check=True,
            capture_output=True,
            timeout=10,
        )

    @property
    def url(self) -> str:
        """mqtt://host:port (mqtts:// with TLS), without credentials."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout: float = 10.0) -> None:
        """Start mosquitto and wait until its port accepts connections."""
        assert not self.running
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start:\n{self.log.read_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop mosquitto cleanly (SIGTERM: it saves its persistence file) and wait for it."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout)
        self._process = None

    def kill(self) -> None:
        """SIGKILL mosquitto (teardown and failure paths)."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait(10)
            self._process = None


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A running anonymous Mosquitto of this test's own."""
    folder = tmp_path / "mosquitto"
    folder.mkdir()
    broker = MosquittoBroker(folder)
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@pytest.fixture
def mqtt_broker_with_password(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A running Mosquitto that only lets in ``broker.credentials``."""
    folder = tmp_path / "mosquitto-auth"
    folder.mkdir()
    broker = MosquittoBroker(folder, credentials=Credentials("device", "correct-horse"))
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@pytest.fixture
def mqtt_broker_tls(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A running Mosquitto on TLS only, requiring a client certificate from its CA."""
    folder = tmp_path / "mosquitto-tls"
    folder.mkdir()
    broker = MosquittoBroker(folder, tls=make_tls_files(folder / "pki"))
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@dataclass(frozen=True)
class Received:
    """One message a Subscriber got."""

    topic: str
    payload: bytes
    retain: bool


class Subscriber:
    """A plain paho client subscribed at QoS 1, collecting what arrives.

    With ``persistent=True`` it keeps a session (clean_session=False), so messages published while
    it is away (a broker restart) are queued for it and delivered when it reconnects.
    """

    def __init__(
        self, broker: MosquittoBroker, topic: str, *, persistent: bool = False, timeout: float = 5.0
    ) -> None:
        self._messages: queue.Queue[Received] = queue.Queue()
        self._subscribed = threading.Event()
        self.received: list[Received] = []
        client_id = f"test-sub-{uuid.uuid4().hex[:8]}"
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=not persistent,
            protocol=mqtt.MQTTv311,
        )
        self._client.reconnect_delay_set(1, 1)
        self._topic = topic

        def on_connect(client, userdata, flags, reason_code, properties):
            if not reason_code.is_failure:
                client.subscribe(topic, qos=1)

        def on_subscribe(client, userdata, mid, reason_codes, properties):
            self._subscribed.set()

        def on_message(client, userdata, message):
            self._messages.put(Received(message.topic, message.payload, bool(message.retain)))

        self._client.on_connect = on_connect
        self._client.on_subscribe = on_subscribe
        self._client.on_message = on_message
        self._client.connect(broker.host, broker.port, keepalive=10)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise TimeoutError(f"subscriber did not subscribe to {topic} within {timeout} s")

    def next(self, timeout: float) -> Received:
        """The next message, or TimeoutError."""
        try:
            message = self._messages.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"nothing on {self._topic} within {timeout} s") from None
        self.received.append(message)
        return message

    def wait_for_payload(self, payload: bytes, timeout: float) -> Received:
        """Messages until one carries ``payload``; TimeoutError if none does in time."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.next(max(0.0, deadline - time.monotonic()))
            if message.payload == payload:
                return message

    def collect(self, count: int, timeout: float) -> list[Received]:
        """Exactly the next ``count`` messages; TimeoutError with what came if fewer do."""
        deadline = time.monotonic() + timeout
        got = []
        for _ in range(count):
            try:
                got.append(self.next(max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                raise TimeoutError(f"{len(got)} of {count} messages on {self._topic}") from None
        return got

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
