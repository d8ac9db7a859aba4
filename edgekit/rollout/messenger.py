"""The rollout controller's MQTT side: retained commands out, the boards' deployment events in.

A persistent session per rollout (client id ``edgekit-rollout-<id>``): events a board sends
while the controller is away wait in the broker for the one that resumes the rollout. Commands
are published retained with QoS 1 and each publish waits for its PUBACK; a refusal (MQTT 5
reason code, such as "not authorized" under the ACL) is an error, not a silent loss.
"""

from __future__ import annotations

import queue
import threading
import time
from types import TracebackType
from typing import Any

from edgekit.deploy_wire import (
    DeployCommand,
    DeploymentEvent,
    RejectedMessage,
    classify_event,
    deploy_topic,
    deployment_filter,
)
from edgekit.errors import DeployError
from edgekit.mqtt import BrokerSettings, SessionOptions, TlsFiles, connect_kwargs, create_client
from edgekit.mqtt.client import paho
from edgekit.mqtt.reasons import fatal_refusal
from edgekit.schema import DEFAULT_PREFIX
from edgekit.vocab import MqttVersion

_EXTRA = "collector"


def controller_settings(
    broker: str,
    rollout_id: str,
    *,
    tls_files: TlsFiles | None = None,
    mqtt_version: MqttVersion = MqttVersion.V5,
    prefix: str = DEFAULT_PREFIX,
) -> BrokerSettings:
    """How the controller of ``rollout_id`` connects: its own persistent session."""
    session = SessionOptions(
        client_id=f"edgekit-rollout-{rollout_id}", prefix=prefix, mqtt_version=mqtt_version,
        keepalive_s=30, session_expiry_s=24 * 3600, connect_timeout_s=10.0, reconnect_max_s=30,
    )  # fmt: skip
    return BrokerSettings.from_url(broker, session=session, tls_files=tls_files)


class Messenger:
    """Publishes deploy commands and collects deployment events, for one rollout."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self.prefix = settings.session.prefix
        self._events: queue.Queue[DeploymentEvent | RejectedMessage] = queue.Queue()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._acks: dict[int, Any] = {}
        self._acked = threading.Condition()
        self._refusal: str | None = None
        self._client: Any = None

    def __enter__(self) -> Messenger:
        s = self.settings
        client = create_client(s, extra=_EXTRA)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        try:
            client.connect(s.address.host, s.address.port, **connect_kwargs(s, extra=_EXTRA))
        except (OSError, UnicodeError) as exc:
            raise DeployError(f"cannot connect to the broker at {s.url}: {exc}") from exc
        client.loop_start()
        self._client = client
        timeout = s.session.connect_timeout_s
        if not self._subscribed.wait(timeout):
            self.__exit__(None, None, None)
            why = self._refusal or f"no answer within {timeout:g} s"
            raise DeployError(f"cannot subscribe at {s.url}: {why}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            stopper = threading.Thread(target=client.loop_stop, daemon=True)
            stopper.start()
            stopper.join(5.0)

    def send(self, command: DeployCommand, *, timeout_s: float = 10.0) -> None:
        """Publish ``command`` retained on its board's deploy topic; return after its PUBACK."""
        topic = deploy_topic(command.device_id, self.prefix)
        self._publish(topic, command.to_json(), timeout_s=timeout_s)

    def events(self) -> list[DeploymentEvent | RejectedMessage]:
        """The events (and the messages refused as not being one) since the last call."""
        found: list[DeploymentEvent | RejectedMessage] = []
        while True:
            try:
                found.append(self._events.get_nowait())
            except queue.Empty:
                return found

    def _publish(self, topic: str, payload: bytes, *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._connected.is_set():  # paho queues while disconnected; we want the ack
            if time.monotonic() > deadline:
                raise DeployError(f"not connected to {self.settings.url} to send on {topic}")
            self._connected.wait(0.2)
        with self._acked:
            info = self._client.publish(topic, payload, qos=1, retain=True)
            while info.mid not in self._acks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeployError(f"no PUBACK from {self.settings.url} for {topic}")
                self._acked.wait(left)
            reason = self._acks.pop(info.mid)
        if reason is not None and reason.is_failure:
            raise DeployError(f"the broker refused the command on {topic}: {reason.getName()}")

    # paho callbacks, on paho's network thread.

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, props: Any):
        if reason_code.is_failure:
            self._refusal = fatal_refusal(reason_code) or reason_code.getName()
            if fatal_refusal(reason_code):
                client.disconnect()
            return
        self._connected.set()
        client.subscribe(deployment_filter(self.prefix), qos=1)

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, codes: Any, props: Any):
        if any(getattr(code, "is_failure", False) for code in codes):
            self._refusal = f"subscription to {deployment_filter(self.prefix)} refused"
            return
        self._subscribed.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if not paho(extra=_EXTRA).topic_matches_sub(deployment_filter(self.prefix), message.topic):
            # Outside the subscription, so nothing about a deployment (seen with the demo's
            # embedded amqtt broker, which handed the controller the boards' statuses).
            return
        self._events.put(classify_event(message.topic, bytes(message.payload), prefix=self.prefix))

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any):
        with self._acked:
            self._acks[mid] = reason
            self._acked.notify_all()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any):
        self._connected.clear()  # the next send waits for paho's reconnect
