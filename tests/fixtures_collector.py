"""Fixtures for the collector and fleet-report tests: a real Mosquitto, real databases, reports.

Registered as a pytest plugin from conftest.py. Each Mosquitto is this test's own, on a free port,
with a config written into tmp_path; PostgreSQL gets a fresh database per test, dropped after.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

# Moved to report_factory, the one report factory; re-exported until every user imports it there.
from report_factory import BUNDLES, BundleSpec, make_report, report_message  # noqa: F401

PG_HOST, PG_PORT = "127.0.0.1", 5432
# CI sets EDGEKIT_REQUIRE_POSTGRES: there a missing server is a failure, not a skip. Read at
# import, before the autouse fixture clears EDGEKIT_* variables for each test.
REQUIRE_POSTGRES = bool(os.environ.get("EDGEKIT_REQUIRE_POSTGRES"))


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
