"""An in-process MQTT broker (amqtt) for a zero-set-up, single-machine collector.

amqtt speaks MQTT 3.1.1 and has no shared subscriptions: it suits one collector and a handful of
boards on a desk. A fleet uses Mosquitto (or any MQTT 5 broker).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Any

from edgekit._optional import require
from edgekit.errors import CollectorError


class EmbeddedBroker:
    """An amqtt broker on ``host:port``, running on its own event loop in a daemon thread."""

    def __init__(self, port: int = 1883, *, host: str = "127.0.0.1", timeout_s: float = 10.0):
        self.host, self.port, self._timeout_s = host, port, timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None

    @property
    def url(self) -> str:
        """Where clients connect."""
        return f"mqtt://{self.host}:{self.port}"

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start listening; CollectorError if the port cannot be bound."""
        broker_module = require("amqtt.broker", extra="collector", package="amqtt")
        # amqtt logs every connection at INFO and stack traces for routine disconnects.
        logging.getLogger("amqtt").setLevel(logging.ERROR)
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name="edgekit-embedded-broker", daemon=True
        )
        self._thread.start()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

        async def start() -> Any:
            broker = broker_module.Broker(config)
            await broker.start()
            return broker

        try:
            self._broker = self._call(start(), "start")
        except BaseException:
            self._stop_loop()
            raise

    def stop(self) -> None:
        """Shut the broker down and end its thread."""
        try:
            if self._broker is not None:
                self._call(self._broker.shutdown(), "stop")
        finally:
            self._broker = None
            self._stop_loop()

    def _call(self, coroutine: Any, what: str) -> Any:
        if self._loop is None:
            raise CollectorError(f"embedded MQTT broker is not running; cannot {what}")
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout=self._timeout_s)
        except TimeoutError as exc:
            future.cancel()
            raise CollectorError(
                f"embedded MQTT broker did not {what} in {self._timeout_s} s"
            ) from exc
        except Exception as exc:
            raise CollectorError(
                f"embedded MQTT broker on {self.host}:{self.port} could not {what}: {exc}"
            ) from exc

    def _stop_loop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(self._timeout_s)
        if self._loop is not None and not self._loop.is_running():
            self._loop.close()
        self._loop, self._thread = None, None
