"""What the NATS tests share: an MQTT 3.1.1 publisher, a JetStream admin view, a consumer thread,
PostgreSQL databases. Plain module; paho and nats-py are imported where used.

NATS speaks MQTT 3.1.1 only, so every MQTT client here does (the fixtures of the Mosquitto tests
use MQTT 5).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fixtures_collector import PG_HOST, PG_PORT, REQUIRE_POSTGRES, postgres_database

from edgekit.collector import NatsCollectorSettings, Store, parse_servers
from edgekit.collector.nats_consumer import NatsConsumer
from edgekit.collector.nats_settings import StreamLayout


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database, or a skip (a failure under EDGEKIT_REQUIRE_POSTGRES)."""
    with socket.socket() as sock:
        sock.settimeout(1)
        reachable = sock.connect_ex((PG_HOST, PG_PORT)) == 0
    if not reachable:
        if REQUIRE_POSTGRES:
            pytest.fail(f"no PostgreSQL on {PG_HOST}:{PG_PORT} (EDGEKIT_REQUIRE_POSTGRES is set)")
        pytest.skip(f"no PostgreSQL on {PG_HOST}:{PG_PORT}")
    with postgres_database() as url:
        yield url


def mqtt_client(
    port: int, *, client_id: str | None = None, timeout_s: float = 15, **login: Any
) -> Any:
    """A connected paho client (MQTT 3.1.1) with its network thread running; ``login`` may
    hold ``username``, ``password`` and ``ca_file`` (TLS). PermissionError if the broker
    refuses the login, TimeoutError if no CONNACK comes."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv311,
    )
    client.max_inflight_messages_set(200)
    if "username" in login:
        client.username_pw_set(login["username"], login.get("password"))
    if "ca_file" in login:
        client.tls_set(ca_certs=str(login["ca_file"]))
    answered = threading.Event()
    refused: list[str] = []

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        answered.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    if not answered.wait(timeout_s) or refused:
        client.loop_stop()
        client.disconnect()
        if refused:
            raise PermissionError(f"127.0.0.1:{port} refused the login: {refused[0]}")
        raise TimeoutError(f"no CONNACK from 127.0.0.1:{port}")
    return client


def publish(
    client: Any, messages: list[tuple[str, bytes]], *, retain: bool = False, timeout_s: float = 30
) -> int:
    """Publish at QoS 1 and wait for the PUBACKs; how many were acknowledged."""
    infos = [client.publish(topic, payload, qos=1, retain=retain) for topic, payload in messages]
    deadline = time.monotonic() + timeout_s
    for info in infos:
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
    return sum(1 for info in infos if info.is_published())


def close(client: Any) -> None:
    """Disconnect a paho client and stop its thread."""
    client.disconnect()
    client.loop_stop()


def jetstream(urls: str, call: Any, **connect: Any) -> Any:
    """Run ``await call(js)`` on a fresh connection to ``urls`` (an admin's view)."""
    import nats

    async def run() -> Any:
        nc = await nats.connect(urls.split(","), connect_timeout=5, **connect)
        try:
            return await call(nc.jetstream(timeout=10))
        finally:
            await nc.close()

    return asyncio.run(run())


def consumer_info(urls: str, layout: StreamLayout) -> Any:
    """The shared durable's state: num_ack_pending, num_redelivered, num_pending."""
    return jetstream(urls, lambda js: js.consumer_info(layout.stream, layout.durable))


def stream_leader(urls: str, stream: str) -> str:
    """The node name that leads ``stream``."""
    return str(jetstream(urls, lambda js: js.stream_info(stream)).cluster.leader)


class ConsumerThread:
    """An in-process NATS collector on a thread; ``with`` starts it and stops it."""

    def __init__(self, settings: NatsCollectorSettings, db_url: str) -> None:
        self.store = Store(db_url)
        self.consumer = NatsConsumer(settings, self.store)
        self._stop = threading.Event()
        self._started = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.consumer.run(stop=self._stop, on_started=self._started.set)
        except BaseException as exc:
            self.error = exc
            self._started.set()

    def __enter__(self) -> ConsumerThread:
        self._thread.start()
        if not self._started.wait(60) or self.error is not None:
            raise RuntimeError(f"consumer did not start: {self.error}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self.store.close()


def settings_for(urls: str, **layout: Any) -> NatsCollectorSettings:
    """Collector settings for a test's own prefix, stream and durable (``layout``)."""
    batch = layout.pop("batch_size", 100)
    return NatsCollectorSettings(
        servers=parse_servers(urls), layout=StreamLayout(**layout), batch_size=batch
    )
