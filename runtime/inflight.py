"""The reporter's book of published reports still waiting for their PUBACK."""

from __future__ import annotations

import threading


class InFlight:
    """What is on its way to the broker, by paho message id (mid) and by report message id.

    Thread-safe: the caller's thread publishes and paho's network thread acknowledges. The lock
    is never held while calling paho, whose network thread holds paho's own lock while it runs
    on_publish (holding both would deadlock). A PUBACK can arrive before ``publish()`` has
    returned its mid: it is kept until :meth:`register` asks for it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_mid: dict[int, str | None] = {}  # mid -> message id (None: a status)
        self._ids: set[str] = set()
        self._early: dict[int, bool] = {}  # mid -> success, for PUBACKs that came first

    def reserve(self, message_id: str) -> bool:
        """Claim ``message_id`` before publishing it; False if it is already on its way, so a
        resend on reconnect and the caller's publish cannot both send it."""
        with self._lock:
            if message_id in self._ids:
                return False
            self._ids.add(message_id)
            return True

    def release(self, message_id: str) -> None:
        """Forget a claim: acknowledged, refused, or never sent."""
        with self._lock:
            self._ids.discard(message_id)

    def register(self, mid: int, message_id: str | None) -> bool | None:
        """Record the mid ``publish()`` returned; the PUBACK's outcome if it already came."""
        with self._lock:
            acked = self._early.pop(mid, None)
            if acked is None:
                self._by_mid[mid] = message_id
            return acked

    def acknowledge(self, mid: int, *, success: bool) -> tuple[bool, str | None]:
        """A PUBACK for ``mid``: (whether the mid was registered, its message id). An unknown
        mid is kept for :meth:`register`."""
        with self._lock:
            if mid not in self._by_mid:
                self._early[mid] = success
                return False, None
            return True, self._by_mid.pop(mid)
