"""The options of an MQTT session, validated once for every client edgekit makes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from edgekit.errors import MqttConfigError
from edgekit.schema import DEFAULT_PREFIX
from edgekit.vocab import MqttVersion

MAX_CLIENT_ID = 128
# MQTT 5 sends the session expiry interval as a four-byte integer.
_MAX_EXPIRY_S = 2**32 - 1
_NOT_IN_NAMES = ("/", "+", "#")


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionOptions:
    """Who the client is to the broker, where its topics live and how long every wait may be.

    The client id is fixed so the broker keeps the session (and its unacknowledged messages)
    across reconnects and restarts: MQTT 5 with ``clean_start=False`` and a session expiry
    interval, or MQTT 3.1.1 with ``clean_session=False``.
    """

    client_id: str
    prefix: str = DEFAULT_PREFIX
    mqtt_version: MqttVersion = MqttVersion.V5
    keepalive_s: int = 60
    # How long the broker keeps the session after the connection drops.
    session_expiry_s: int = 7 * 24 * 3600
    connect_timeout_s: float = 5.0
    # Reconnect back-off doubles from min to max, in whole seconds (paho's granularity).
    reconnect_min_s: int = 1
    reconnect_max_s: int = 60

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mqtt_version", MqttVersion(self.mqtt_version))
        except ValueError:
            raise MqttConfigError(
                f"MQTT version {self.mqtt_version!r} is not 5 or 3.1.1", setting="mqtt_version"
            ) from None
        check_client_id(self.client_id)
        check_prefix(self.prefix)
        if not 0 <= self.keepalive_s <= 65535:
            raise MqttConfigError(
                f"keepalive {self.keepalive_s} is not between 0 and 65535 seconds",
                setting="keepalive_s",
            )
        if not 0 <= self.session_expiry_s <= _MAX_EXPIRY_S:
            raise MqttConfigError(
                f"session expiry {self.session_expiry_s} s is not between 0 and {_MAX_EXPIRY_S}",
                setting="session_expiry_s",
            )
        if not self.connect_timeout_s > 0:
            raise MqttConfigError(
                f"connect timeout {self.connect_timeout_s} s must be more than 0",
                setting="connect_timeout_s",
            )
        if not 1 <= self.reconnect_min_s <= self.reconnect_max_s:
            raise MqttConfigError(
                f"reconnect delays {self.reconnect_min_s} and {self.reconnect_max_s} s must "
                "satisfy 1 <= min <= max",
                setting="reconnect_min_s",
            )


class SessionKwargs(TypedDict, total=False):
    """The options of :class:`SessionOptions` besides the client id, for ``**overrides``."""

    prefix: str
    mqtt_version: MqttVersion
    keepalive_s: int
    session_expiry_s: int
    connect_timeout_s: float
    reconnect_min_s: int
    reconnect_max_s: int


def check_client_id(client_id: str) -> None:
    """MqttConfigError unless ``client_id`` is 1 to 128 characters without '/', '+' or '#'."""
    if (
        not client_id
        or len(client_id) > MAX_CLIENT_ID
        or any(c in client_id for c in _NOT_IN_NAMES)
    ):
        raise MqttConfigError(
            f"client id {client_id!r} must be 1 to {MAX_CLIENT_ID} characters without "
            "'/', '+' or '#'",
            setting="client_id",
        )


def check_prefix(prefix: str) -> None:
    """MqttConfigError unless ``prefix`` can start a topic: not empty, no leading or trailing
    '/', no wildcards."""
    if not prefix or prefix[0] == "/" or prefix[-1] == "/" or "+" in prefix or "#" in prefix:
        raise MqttConfigError(
            f"topic prefix {prefix!r} must not be empty, start or end with '/', or contain + or #",
            setting="prefix",
        )
