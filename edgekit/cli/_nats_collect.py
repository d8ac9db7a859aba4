"""``edgekit collect --nats``: its options, and the settings they make.

The MQTT-only options (--broker, --share, --client-id, --mqtt, --embedded-broker) mean nothing
on NATS: given with --nats they are an error, not silently ignored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgekit.errors import ConfigError
from edgekit.schema import DEFAULT_PREFIX
from edgekit.vocab import StreamRetention

if TYPE_CHECKING:
    from edgekit.collector.nats_settings import NatsCollectorSettings

Nats = Annotated[
    str | None,
    typer.Option(
        "--nats",
        help="Collect from NATS JetStream instead of an MQTT broker: the cluster's servers, "
        "nats://[user[:password]@]host[:port],... (tls:// for TLS); every collector shares one "
        "durable consumer. TLS files come from --ca-file, --certfile, --keyfile.",
        show_default=False,
    ),
]
Stream = Annotated[
    str,
    typer.Option("--stream", help="--nats: the JetStream stream (created when missing)."),
]
Replicas = Annotated[
    int,
    typer.Option(
        "--replicas", min=1, max=5, help="--nats: replicas of the streams (3 survives a node)."
    ),
]
Retention = Annotated[
    StreamRetention,
    typer.Option(
        "--retention",
        help="--nats: limits keeps messages until --max-age; workqueue drops them once acked.",
    ),
]
MaxAge = Annotated[
    str,
    typer.Option("--max-age", help="--nats: how long the stream keeps a message: 7d, 12h, 90m."),
]
MaxAckPending = Annotated[
    int,
    typer.Option(
        "--max-ack-pending",
        min=1,
        help="--nats: most messages unacknowledged across all collectors (back-pressure).",
    ),
]
AckWait = Annotated[
    float,
    typer.Option(
        "--ack-wait",
        min=1,
        help="--nats: seconds before what a collector fetched and did not acknowledge (it "
        "died) goes to another one.",
    ),
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> float:
    """``7d``, ``12h``, ``90m``, ``30s`` or plain seconds; ConfigError otherwise."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if not found or float(found.group(1)) <= 0:
        raise ConfigError(f"setting 'max_age': {text!r} is not a duration like 7d, 12h or 90m")
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


def nats_settings(
    urls: str,
    *,
    mqtt_only: dict[str, object],
    prefix: str | None,
    tls: list[str | None],
    batch_size: int,
    stream: str,
    replicas: int,
    retention: StreamRetention,
    max_age: str,
    max_ack_pending: int,
    ack_wait: float,
) -> NatsCollectorSettings:
    """The settings of ``collect --nats``; ConfigError for a flag that belongs to MQTT
    (``mqtt_only`` maps each such flag to its value)."""
    given = [flag for flag, value in mqtt_only.items() if value]
    if given:
        raise ConfigError(f"{given[0]} is for an MQTT broker; it cannot be used with --nats")
    from edgekit.collector.nats_settings import (
        NatsCollectorSettings,
        StreamLayout,
        parse_servers,
    )
    from edgekit.mqtt import TlsFiles

    layout = StreamLayout(
        stream=stream,
        replicas=replicas,
        retention=retention,
        max_age_s=seconds(max_age),
        max_ack_pending=max_ack_pending,
        ack_wait_s=ack_wait,
        prefix=prefix if prefix is not None else DEFAULT_PREFIX,
    )
    return NatsCollectorSettings(
        servers=parse_servers(urls),
        layout=layout,
        tls_files=TlsFiles(*(Path(f) if f else None for f in tls)),
        batch_size=batch_size,
    )
