"""Fixtures for the collector and fleet-report tests: a real Mosquitto, real databases, reports.

Registered as a pytest plugin from conftest.py. Each Mosquitto is this test's own (from the one
launcher, mosquitto_launcher); PostgreSQL gets a fresh database per test, dropped after. paho is
imported only by publish_all.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mosquitto_launcher import MosquittoBroker

# Moved to report_factory, the one report factory; re-exported until every user imports it there.
from report_factory import BUNDLES, BundleSpec, make_report, report_message  # noqa: F401

PG_HOST, PG_PORT = "127.0.0.1", 5432
# CI sets EDGEKIT_REQUIRE_POSTGRES: there a missing server is a failure, not a skip. Read at
# import, before the autouse fixture clears EDGEKIT_* variables for each test.
REQUIRE_POSTGRES = bool(os.environ.get("EDGEKIT_REQUIRE_POSTGRES"))


# -- Mosquitto -------------------------------------------------------------------------------


def collector_broker(folder: Path, *, port: int | None = None) -> MosquittoBroker:
    """A broker for collector tests (not started): it queues for disconnected persistent
    sessions without limit (the outage tests) and keeps at most 20 messages in flight."""
    return MosquittoBroker(
        folder,
        port=port,
        persistence=False,
        options=["max_queued_messages 100000", "max_inflight_messages 20"],
    )


@pytest.fixture
def collector_mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A fresh Mosquitto for this test."""
    with collector_broker(tmp_path / "mosquitto") as broker:
        yield broker


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


# -- publishing ------------------------------------------------------------------------------


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


def table_rows(url: str, sql: str) -> list[tuple]:
    """Rows of a plain SQL query on a store, read with a separate engine."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()
