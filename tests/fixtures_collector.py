"""Fixtures for the collector and fleet-report tests: a real Mosquitto, real databases, reports.

Registered as a pytest plugin from conftest.py. Each Mosquitto is this test's own, on a free port,
with a config written into tmp_path; PostgreSQL gets a fresh database per test, dropped after.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edgekit.schema import Report

PG_HOST, PG_PORT = "127.0.0.1", 5432
# CI sets EDGEKIT_REQUIRE_POSTGRES: there a missing server is a failure, not a skip. Read at
# import, before the autouse fixture clears EDGEKIT_* variables for each test.
REQUIRE_POSTGRES = bool(os.environ.get("EDGEKIT_REQUIRE_POSTGRES"))


# -- reports ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleSpec:
    """A bundle as reports describe it (what the build put in the manifest)."""

    bundle_id: str
    profile: str
    est_latency_ms: float
    fp32: float
    quantized: float
    model_bytes: int

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.bundle_id.encode()).hexdigest()


BUNDLES = (
    BundleSpec("fashion-cnn-rpi4", "rpi4", 2.4, 91.2, 90.6, 98_304),
    BundleSpec("fashion-cnn-rpi5", "rpi5", 1.1, 91.2, 90.9, 98_304),
    BundleSpec("mobilenet-x86", "x86-64", 0.6, 88.0, 87.1, 612_352),
)


def make_report(
    device_id: str = "rpi4-lab-01",
    *,
    sequence: int = 0,
    message_id: str | None = None,
    bundle: BundleSpec = BUNDLES[0],
    p50_ms: float = 3.0,
    accuracy: float | None = 90.1,
) -> Report:
    """A valid report, with figures that vary with the sequence number like a real board's."""
    start = datetime(2025, 3, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=sequence)
    jitter = (sequence % 7) * 0.05
    p50 = p50_ms + jitter
    return Report.model_validate(
        {
            "schema": "edgekit.report/1",
            "message_id": message_id or uuid.uuid4().hex,
            "device_id": device_id,
            "sequence": sequence,
            "bundle_id": bundle.bundle_id,
            "bundle_digest": bundle.digest,
            "profile": bundle.profile,
            "artifact": "model.tflite",
            "format": "tflite",
            "backend": "litert",
            "backend_version": "1.2.0",
            "threads": 4,
            "started_at": start.isoformat(),
            "finished_at": (start + timedelta(seconds=30)).isoformat(),
            "latency": {
                "count": 200,
                "mean_ms": p50 * 1.05,
                "std_ms": 0.2,
                "min_ms": p50 * 0.9,
                "p50_ms": p50,
                "p90_ms": p50 * 1.2,
                "p99_ms": p50 * 1.6,
                "max_ms": p50 * 2.0,
                "init_ms": 40.0,
                "first_ms": p50 * 3,
            },
            "accuracy": None
            if accuracy is None
            else {"metric": "top1", "value": accuracy, "samples": 200},
            "peak_rss_mb": 48.5,
            "build": {
                "est_latency_ms": bundle.est_latency_ms,
                "metric": "top1",
                "fp32": bundle.fp32,
                "quantized": bundle.quantized,
                "model_bytes": bundle.model_bytes,
            },
            "host": {
                "hostname": device_id,
                "machine": "aarch64",
                "system": "Linux",
                "python": "3.11.2",
                "cpu_count": 4,
            },
        }
    )


# -- Mosquitto -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout_s: float = 10.0, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@dataclass(frozen=True)
class Mosquitto:
    """A running broker of this test's own."""

    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


def start_mosquitto(folder: Path, *, port: int | None = None, max_inflight: int = 20) -> Mosquitto:
    """Start Mosquitto (on a free port unless given) with a config in ``folder``; the caller
    stops it."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.fail("mosquitto is not installed (bash .ci/setup installs it)")
    port = port or free_port()
    folder.mkdir(parents=True, exist_ok=True)
    conf, log = folder / "mosquitto.conf", folder / "mosquitto.log"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        # Queued QoS 1 messages for a disconnected persistent session (the outage test).
        "max_queued_messages 100000\n"
        f"max_inflight_messages {max_inflight}\n"
        # Logged to stderr, which goes to a file we opened: mosquitto drops root privileges
        # and could not open a file in tmp_path itself.
        "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
    )
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=log_file
        )
    try:
        wait_for_port(port, proc=process)
    except Exception:
        process.kill()
        raise
    return Mosquitto(port, process, log)


def stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def collector_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh Mosquitto for this test."""
    broker = start_mosquitto(tmp_path / "mosquitto")
    try:
        yield broker
    finally:
        stop_process(broker.process)


# -- databases -------------------------------------------------------------------------------


def _postgres_reachable() -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((PG_HOST, PG_PORT)) == 0


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards."""
    import psycopg

    name = f"edgekit_test_{uuid.uuid4().hex[:12]}"
    admin = {"host": PG_HOST, "port": PG_PORT, "user": "postgres", "dbname": "test"}
    with psycopg.connect(**admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(**admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL: a SQLite file in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'edgekit.db'}"
        return
    if not _postgres_reachable():
        if REQUIRE_POSTGRES:
            pytest.fail(f"no PostgreSQL on {PG_HOST}:{PG_PORT} (EDGEKIT_REQUIRE_POSTGRES is set)")
        pytest.skip(f"no PostgreSQL on {PG_HOST}:{PG_PORT}")
    with postgres_database() as url:
        yield url


# -- publishing and waiting ------------------------------------------------------------------


def publish_all(
    port: int,
    messages: list[tuple[str, bytes]],
    *,
    qos: int = 1,
    retain: bool = False,
    client_id: str | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Publish with a plain paho client and wait for every PUBACK."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id or f"test-pub-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    try:
        infos = [client.publish(t, p, qos=qos, retain=retain) for t, p in messages]
        deadline = time.monotonic() + timeout_s
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "broker did not acknowledge a publish in time"
    finally:
        client.disconnect()
        client.loop_stop()


def report_message(report: Report, *, prefix: str = "edgekit/v1") -> tuple[str, bytes]:
    """(topic, payload) as the device publishes it."""
    return f"{prefix}/{report.device_id}/report", report.to_json()


def wait_until(predicate, *, timeout_s: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def table_rows(url: str, sql: str) -> list[tuple]:
    """Rows of a plain SQL query on a store, read with a separate engine."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()
