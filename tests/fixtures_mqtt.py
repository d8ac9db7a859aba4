"""A real Mosquitto per test, and a real paho subscriber to see what arrives.

Registered as a pytest plugin from conftest.py. The brokers come from the one launcher
(mosquitto_launcher); each is killed at teardown. paho is imported only when a Subscriber is
made, so tests that never touch MQTT (profiles, the outbox) run without it.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mosquitto_launcher import Credentials, MosquittoBroker, make_pki


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A running anonymous Mosquitto of this test's own."""
    with MosquittoBroker(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
def mqtt_broker_with_password(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A running Mosquitto that only lets in ``broker.credentials``."""
    credentials = Credentials("device", "correct-horse")
    with MosquittoBroker(tmp_path / "mosquitto-auth", credentials=credentials) as broker:
        yield broker


@pytest.fixture
def mqtt_broker_tls(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A running Mosquitto on TLS only, requiring a client certificate from its CA."""
    folder = tmp_path / "mosquitto-tls"
    with MosquittoBroker(folder, tls=make_pki(folder / "pki")) as broker:
        yield broker


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
        import paho.mqtt.client as mqtt

        self._messages: queue.Queue[Received] = queue.Queue()
        self._subscribed = threading.Event()
        self.received: list[Received] = []
        self._client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
            clean_session=not persistent,
            protocol=mqtt.MQTTv311,
        )
        self._client.reconnect_delay_set(1, 1)
        self._topic = topic

        def on_connect(client: Any, userdata: Any, flags: Any, reason_code: Any, props: Any):
            if not reason_code.is_failure:
                client.subscribe(topic, qos=1)

        def on_subscribe(client: Any, userdata: Any, mid: Any, reason_codes: Any, props: Any):
            self._subscribed.set()

        def on_message(client: Any, userdata: Any, message: Any):
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
