"""The JetStream layout every NATS collector shares, created once and checked on every start.

Why two streams. nats-server sends a board's PUBACK once the QoS 1 message is committed, by a
quorum, to its own ``$MQTT_msgs`` stream; a stream of ours that captured the subjects directly
would get its copy afterwards, fire-and-forget, and a node dying in between loses reports that
were PUBACKed (measured: 1,300 to 3,000 of 7,200 in one failover). And the server creates
``$MQTT_msgs`` with *interest* retention, which discards a message as soon as no consumer
wants it. So the collector creates ``$MQTT_msgs`` itself, with *limits* retention and the same
replicas, before any board connects (or converts the server's), and the collector's stream
*sources* the report and status subjects from it: whatever was PUBACKed is on a quorum and is
copied on, from the last copied sequence, after any failover. One durable pull consumer with
explicit acknowledgement on that stream is shared by every collector process on every host.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from edgekit.collector.nats_settings import StreamLayout
from edgekit.errors import CollectorError
from edgekit.vocab import StreamRetention

log = logging.getLogger(__name__)

MQTT_STREAM = "$MQTT_msgs"
MQTT_SUBJECTS = "$MQTT.msgs.>"
_MQTT_PREFIX = "$MQTT.msgs."
# JetStream errors of a cluster still forming: no suitable peers (a node not yet seen),
# temporarily unavailable (no meta leader yet). Retried for this long.
_NOT_READY = {10005, 10008}
_NOT_READY_S = 30.0


def mqtt_stream_config(layout: StreamLayout) -> Any:
    """``$MQTT_msgs`` as the server would make it, but with limits retention and an age limit."""
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

    return StreamConfig(
        name=MQTT_STREAM,
        subjects=[MQTT_SUBJECTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        num_replicas=layout.replicas,
        max_age=layout.mqtt_buffer_s,
    )


def stream_config(layout: StreamLayout) -> Any:
    """The collector's stream: the report and status subjects, sourced from ``$MQTT_msgs``."""
    from nats.js.api import (
        DiscardPolicy,
        RetentionPolicy,
        StorageType,
        StreamConfig,
        StreamSource,
        SubjectTransform,
    )

    # One transform per kind: each is also the filter, so no other topic enters the stream.
    transforms = [
        SubjectTransform(
            src=_MQTT_PREFIX + subject, dest=subject.replace("*", "{{wildcard(1)}}", 1)
        )
        for subject in layout.subjects
    ]
    retention = {
        StreamRetention.LIMITS: RetentionPolicy.LIMITS,
        StreamRetention.WORKQUEUE: RetentionPolicy.WORK_QUEUE,
    }[layout.retention]
    return StreamConfig(
        name=layout.stream,
        description=f"edgekit reports and statuses under {layout.prefix}/, from {MQTT_STREAM}",
        sources=[StreamSource(name=MQTT_STREAM, subject_transforms=transforms)],
        retention=retention,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        num_replicas=layout.replicas,
        max_age=layout.max_age_s,
        max_bytes=layout.max_bytes or -1,
    )


def consumer_config(layout: StreamLayout) -> Any:
    """The one durable: explicit acks after commit, redelivery after ``ack_wait``, bounded."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    return ConsumerConfig(
        # Named as well: the API subject is then CONSUMER.CREATE.<stream>.<name>, which the
        # shipped permissions allow for this one consumer only.
        name=layout.durable,
        durable_name=layout.durable,
        description="edgekit collectors: acknowledged after the database commit",
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=layout.ack_wait_s,
        max_ack_pending=layout.max_ack_pending,
        # The collectors reject a message after poison_after deliveries; this is the server's
        # backstop for one that even that cannot store (it then stays in the stream, unread).
        max_deliver=layout.max_deliver,
    )


async def ensure_layout(js: Any, layout: StreamLayout) -> None:
    """Create the streams and the durable, or check them and bring them to ``layout``.

    CollectorError naming what is wrong when that cannot be done (no JetStream, no permission,
    a server too old for subject transforms, a setting the server will not change).
    """
    await _ensure_mqtt_stream(js, layout)
    await _ensure_stream(js, layout)
    await _ensure_consumer(js, layout)


async def _ensure_mqtt_stream(js: Any, layout: StreamLayout) -> None:
    wanted = mqtt_stream_config(layout)
    info = await _info(lambda: js.stream_info(MQTT_STREAM), f"stream {MQTT_STREAM}")
    if info is None:
        await _apply(lambda: js.add_stream(wanted), f"creating stream {MQTT_STREAM}")
        return
    have = info.config
    if have.retention != wanted.retention:
        log.warning(
            "%s had %s retention (the server made it because an MQTT client connected before "
            "any collector): switched to limits; reports PUBACKed before now and not yet "
            "copied to %s may be gone",
            MQTT_STREAM,
            getattr(have.retention, "value", have.retention),
            layout.stream,
        )
    elif (have.num_replicas, have.max_age) == (wanted.num_replicas, wanted.max_age):
        return
    await _apply(lambda: js.update_stream(wanted), f"updating stream {MQTT_STREAM}")


async def _ensure_stream(js: Any, layout: StreamLayout) -> None:
    wanted = stream_config(layout)
    info = await _info(lambda: js.stream_info(layout.stream), f"stream {layout.stream}")
    if info is None:
        await _apply(lambda: js.add_stream(wanted), f"creating stream {layout.stream}")
        return
    have = info.config
    if have.subjects:
        raise CollectorError(
            f"stream {layout.stream} captures subjects {have.subjects} directly: a node loss "
            f"can lose PUBACKed reports that way; delete it or choose another --stream"
        )
    if _differs(have, wanted):
        log.warning("stream %s differs from the requested layout; updating it", layout.stream)
        await _apply(lambda: js.update_stream(wanted), f"updating stream {layout.stream}")


def _differs(have: Any, wanted: Any) -> bool:
    def sources(config: Any) -> list[tuple[str, list[tuple[str, str]]]]:
        return [
            (s.name, [(t.src, t.dest) for t in s.subject_transforms or []])
            for s in config.sources or []
        ]

    fields = ("retention", "num_replicas", "max_age", "max_bytes")
    return sources(have) != sources(wanted) or any(
        getattr(have, f) != getattr(wanted, f) for f in fields
    )


async def _ensure_consumer(js: Any, layout: StreamLayout) -> None:
    from nats.js.api import AckPolicy

    wanted = consumer_config(layout)
    where = f"consumer {layout.durable} on stream {layout.stream}"
    info = await _info(lambda: js.consumer_info(layout.stream, layout.durable), where)
    if info is not None:
        have = info.config
        if have.ack_policy != AckPolicy.EXPLICIT or have.filter_subject:
            raise CollectorError(
                f"{where} exists with ack policy {have.ack_policy} and filter "
                f"{have.filter_subject!r}: it must acknowledge explicitly and take every "
                f"subject; delete it or name another durable"
            )
        fields = ("ack_wait", "max_ack_pending", "max_deliver")
        if all(getattr(have, f) == getattr(wanted, f) for f in fields):
            return
    # Creating an existing durable with new limits updates it.
    await _apply(lambda: js.add_consumer(layout.stream, wanted), f"setting up {where}")


async def _info(make: Any, what: str) -> Any:
    """The info ``make()`` returns, or None when ``what`` does not exist."""
    from nats.js.errors import NotFoundError

    try:
        return await _apply(make, f"reading {what}")
    except CollectorError as exc:
        if isinstance(exc.__cause__, NotFoundError):
            return None
        raise


async def _apply(make: Any, what: str) -> Any:
    """``await make()``; while the cluster is still forming (a node not yet seen, no meta
    leader), try again for a while. CollectorError from any other error."""
    from nats.js.errors import APIError

    deadline = time.monotonic() + _NOT_READY_S
    while True:
        try:
            return await make()
        except APIError as exc:
            if exc.err_code not in _NOT_READY or time.monotonic() > deadline:
                raise _error(what, exc) from exc
            log.info("%s: %s; trying again", what, exc.description)
            await asyncio.sleep(0.5)
        except Exception as exc:
            raise _error(what, exc) from exc


def _error(what: str, exc: Exception) -> CollectorError:
    from nats.errors import NoRespondersError, TimeoutError
    from nats.js.errors import APIError

    if isinstance(exc, NoRespondersError):
        return CollectorError(f"{what}: JetStream is not enabled for this account or server")
    if isinstance(exc, TimeoutError):
        # A denied request is dropped by the server: the client only sees no answer.
        return CollectorError(
            f"{what}: no answer from JetStream (is this user allowed to? see the "
            "permissions in edgekit-accounts.conf; or the cluster has no leader)"
        )
    if isinstance(exc, APIError):
        return CollectorError(f"{what}: the server refused: {exc.description or exc}")
    return CollectorError(f"{what}: {type(exc).__name__}: {exc}")
