"""How a collector connects, subscribes and batches, on top of the shared MQTT settings."""

from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass
from typing import Unpack

from edgekit.errors import MqttConfigError
from edgekit.mqtt import BrokerSettings, SessionKwargs, SessionOptions

DEFAULT_BROKER_URL = "mqtt://127.0.0.1:1883"
DEFAULT_CLIENT_ID = "edgekit-collector"
_NOT_IN_NAMES = ("/", "+", "#")


def collector_session(client_id: str, **options: Unpack[SessionKwargs]) -> SessionOptions:
    """A collector's session: a shorter keepalive and back-off than a board's, so it notices a
    broker restart sooner, and a longer connect timeout; ``options`` override any of it."""
    base = SessionOptions(
        client_id=client_id, keepalive_s=30, connect_timeout_s=10.0, reconnect_max_s=30
    )
    return dataclasses.replace(base, **options)


def default_client_id(share_group: str | None) -> str:
    """``edgekit-collector``, or ``edgekit-collector-GROUP-HOSTNAME`` in a share group, where
    each collector needs a session of its own."""
    if share_group is None:
        return DEFAULT_CLIENT_ID
    return f"{DEFAULT_CLIENT_ID}-{share_group}-{socket.gethostname()}"[:120]


@dataclass(frozen=True, kw_only=True)
class CollectorSettings:
    """The broker to collect from, and how; every wait is bounded.

    The session's client id is fixed, so the broker keeps this collector's session (and its
    unacknowledged messages) across restarts. Each collector of a share group needs its own.
    """

    broker: BrokerSettings
    share_group: str | None = None
    batch_size: int = 1000
    # MQTT 5: how many unacknowledged messages the broker may have in flight to us.
    receive_maximum: int = 1000
    store_retry_max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.share_group is not None and (
            not self.share_group or any(c in self.share_group for c in _NOT_IN_NAMES)
        ):
            raise MqttConfigError(
                f"share group {self.share_group!r} must be non-empty, without '/', '+' or '#'",
                setting="share_group",
            )
        if not 1 <= self.batch_size <= 100_000:
            raise MqttConfigError("batch size must be 1..100000", setting="batch_size")
        if not 1 <= self.receive_maximum <= 65_535:
            raise MqttConfigError("receive maximum must be 1..65535", setting="receive_maximum")
        if not self.store_retry_max_s > 0:
            raise MqttConfigError(
                "store retry delay must be more than 0 s", setting="store_retry_max_s"
            )

    @property
    def prefix(self) -> str:
        """The topic prefix the devices publish under."""
        return self.broker.session.prefix

    @property
    def timeout_s(self) -> float:
        """How long any one wait on the broker may take."""
        return self.broker.session.connect_timeout_s

    @property
    def report_filter(self) -> str:
        """Subscription for reports, shared when a group is set."""
        plain = f"{self.prefix}/+/report"
        return f"$share/{self.share_group}/{plain}" if self.share_group else plain

    @property
    def status_filter(self) -> str:
        """Subscription for statuses; never shared, since brokers send retained messages
        only to plain subscriptions and every collector should know every device's state."""
        return f"{self.prefix}/+/status"

    def with_client_id(self, client_id: str) -> CollectorSettings:
        """The same settings under another client id (one worker of a share group)."""
        session = dataclasses.replace(self.broker.session, client_id=client_id)
        return dataclasses.replace(self, broker=dataclasses.replace(self.broker, session=session))
