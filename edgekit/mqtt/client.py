"""The one place paho-mqtt clients are made, from :class:`BrokerSettings`.

paho is imported here, when a client is created, never when edgekit.mqtt is imported: a board
or a test that never connects does not need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from edgekit._optional import require
from edgekit.mqtt.settings import BrokerSettings
from edgekit.mqtt.tls import configure_tls
from edgekit.vocab import MqttVersion


@dataclass(frozen=True, slots=True)
class Will:
    """The Last Will the broker publishes when the client vanishes without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def paho(*, extra: str) -> ModuleType:
    """``paho.mqtt.client``, or MissingDependencyError naming ``extra``."""
    return require("paho.mqtt.client", extra=extra, package="paho-mqtt")


def create_client(
    settings: BrokerSettings, *, extra: str, manual_ack: bool = False, will: Will | None = None
) -> Any:
    """A paho client (callback API 2) with the session, credentials, TLS and back-off of
    ``settings``; not connected. ``extra`` names the extra to install if paho is missing."""
    mqtt = paho(extra=extra)
    s = settings.session
    v5 = s.mqtt_version is MqttVersion.V5
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=s.client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        # MQTT 3.1.1 keeps the session with clean_session=False; MQTT 5 uses clean_start and
        # the session expiry interval given at connect (connect_kwargs).
        clean_session=None if v5 else False,
        manual_ack=manual_ack,
        reconnect_on_failure=True,
    )
    client.connect_timeout = s.connect_timeout_s
    client.reconnect_delay_set(min_delay=s.reconnect_min_s, max_delay=s.reconnect_max_s)
    address = settings.address
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        configure_tls(client, settings.tls_files, where=address.url)
    if will is not None:
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    return client


def connect_kwargs(
    settings: BrokerSettings, *, extra: str, receive_maximum: int | None = None
) -> dict[str, Any]:
    """Keyword arguments of ``client.connect``/``connect_async`` after host and port: the
    keepalive, and for MQTT 5 a persistent session (and the in-flight window, if given)."""
    s = settings.session
    if s.mqtt_version is not MqttVersion.V5:
        return {"keepalive": s.keepalive_s}
    mqtt = paho(extra=extra)
    properties = mqtt.Properties(mqtt.PacketTypes.CONNECT)
    properties.SessionExpiryInterval = s.session_expiry_s
    if receive_maximum is not None:
        properties.ReceiveMaximum = receive_maximum
    return {"keepalive": s.keepalive_s, "clean_start": False, "properties": properties}
