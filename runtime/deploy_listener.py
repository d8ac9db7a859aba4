"""The board's subscription to its own deploy topic: the newest desired state, kept for the daemon.

A session of its own beside the reporter's (client id ``<reporter's>-deploy``, nothing kept by
the broker after it disconnects): the command is retained, so the broker hands it over on every
(re)subscribe, including after the board was offline during the rollout. Only the newest
command matters, as each one is the whole desired state; the agent ignores one it has finished.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from edgekit.deploy_wire import DeployCommand, RejectedMessage, classify_command, deploy_topic
from edgekit.mqtt import BrokerSettings, connect_kwargs, create_client

_EXTRA = "device"


class DeployListener:
    """Keeps the newest command published on ``<prefix>/<device_id>/deploy``."""

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        device_id: str,
        say: Callable[[str], None] = print,
    ) -> None:
        session = dataclasses.replace(
            settings.session,
            client_id=f"{settings.session.client_id}-deploy"[:128],
            session_expiry_s=0,
        )
        self.settings = dataclasses.replace(settings, session=session)
        self.device_id = device_id
        self.topic = deploy_topic(device_id, session.prefix)
        self._say = say
        self._lock = threading.Lock()
        self._newest: DeployCommand | None = None
        self._client: Any = None

    def take(self) -> DeployCommand | None:
        """The newest command not taken yet, or None."""
        with self._lock:
            command, self._newest = self._newest, None
        return command

    def waiting(self) -> bool:
        """Whether a command arrived that was not taken yet."""
        with self._lock:
            return self._newest is not None

    def __enter__(self) -> DeployListener:
        client = create_client(self.settings, extra=_EXTRA)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        s = self.settings
        # The reporter already says when the broker cannot be reached; this one just retries.
        client.connect_async(s.address.host, s.address.port, **connect_kwargs(s, extra=_EXTRA))
        client.loop_start()
        self._client = client
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        # Bounded, as the reporter's: paho's thread may sit in a blocking connect.
        stopper = threading.Thread(target=client.loop_stop, name="edgekit-deploy-stop", daemon=True)
        stopper.start()
        stopper.join(5.0)

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if not reason_code.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        prefix = self.settings.session.prefix
        got = classify_command(
            message.topic, bytes(message.payload), device_id=self.device_id, prefix=prefix
        )
        if isinstance(got, RejectedMessage):
            self._say(f"ignored a deploy message on {got.topic}: {got.reason}")
        elif got is not None:
            with self._lock:
                self._newest = got
