"""``edgekit collect``: subscribe to a fleet's reports over MQTT and store them in a database.

A thin shell around :func:`edgekit.collector.serve`: options (flags, else ``EDGEKIT_*``
variables, else defaults), signals and messages.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from edgekit._env import env_var
from edgekit.cli import _mqtt_options as mqtt_options
from edgekit.cli import _nats_collect as _nats
from edgekit.cli._output import err_console, warning_line
from edgekit.errors import ConfigError
from edgekit.vocab import MqttVersion, StreamRetention

if TYPE_CHECKING:
    from edgekit.mqtt import SessionKwargs


class _WarningLines(logging.Handler):
    """The collector's log warnings as ``edgekit: warning:`` lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        warning_line(record.getMessage())


def collect(
    broker: mqtt_options.Broker = None,
    db: Annotated[
        str | None,
        typer.Option(
            help=(
                "SQLAlchemy database URL, e.g. sqlite:///edgekit.db or "
                "postgresql+psycopg://user@host/db [default: sqlite:///edgekit.db] "
                f"[env: {env_var('db')}]"
            ),
            show_default=False,
        ),
    ] = None,
    share: Annotated[
        str | None,
        typer.Option(
            help="Shared-subscription group: collectors with the same group split the reports.",
            show_default=False,
        ),
    ] = None,
    prefix: mqtt_options.Prefix = None,
    client_id: Annotated[
        str | None,
        typer.Option(
            help=(
                "Fixed MQTT client id of this collector's persistent session; each collector "
                "of a share group needs its own. Default: edgekit-collector, or "
                f"edgekit-collector-GROUP-HOSTNAME with --share. [env: {env_var('collector_id')}]"
            ),
            show_default=False,
        ),
    ] = None,
    mqtt: mqtt_options.Mqtt = None,
    ca_file: mqtt_options.CaFile = None,
    certfile: mqtt_options.Certfile = None,
    keyfile: mqtt_options.Keyfile = None,
    embedded_broker: Annotated[
        bool,
        typer.Option(
            "--embedded-broker",
            help="Run an MQTT broker (amqtt, MQTT 3.1.1) in this process on --broker's port.",
        ),
    ] = False,
    duration: Annotated[
        float | None,
        typer.Option(
            min=0, help="Stop after this many seconds (scripts, tests).", show_default=False
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="Most messages committed per transaction.")
    ] = 1000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Collector processes sharing the subscription (group from --share, else "
            "'edgekit'); one process takes about 10,000 reports/s.",
        ),
    ] = 1,
    nats: _nats.Nats = None,
    stream: _nats.Stream = "EDGEKIT",
    replicas: _nats.Replicas = 3,
    retention: _nats.Retention = StreamRetention.LIMITS,
    max_age: _nats.MaxAge = "7d",
    max_ack_pending: _nats.MaxAckPending = 20_000,
    ack_wait: _nats.AckWait = 30.0,
) -> None:
    """Store the fleet's reports, statuses and rejected messages until Ctrl-C or SIGTERM.

    A message is acknowledged only after its row is committed; repeated message ids are dropped.
    Without --broker (or EDGEKIT_BROKER) it connects to mqtt://127.0.0.1:1883; with --nats it
    consumes the boards' reports from a NATS JetStream cluster that speaks MQTT to them.
    """
    from edgekit.collector import DEFAULT_BROKER_URL, DEFAULT_DB_URL, serve
    from edgekit.mqtt import TlsFiles

    environ = mqtt_options.environment()

    def pick(value: str | Path | None, name: str) -> str | None:
        return str(value) if value is not None else mqtt_options.from_env(environ, name)

    session: SessionKwargs = {}
    if (chosen_prefix := pick(prefix, "prefix")) is not None:
        session["prefix"] = chosen_prefix
    if (version := pick(mqtt, "mqtt")) is not None:
        session["mqtt_version"] = _version(version, given=mqtt is not None)
    tls = [pick(value, name) for value, name in
           ((ca_file, "ca_file"), (certfile, "certfile"), (keyfile, "keyfile"))]  # fmt: skip
    nats_config = None
    if nats is not None:
        nats_config = _nats.nats_settings(
            nats,
            mqtt_only={"--broker": broker, "--share": share, "--client-id": client_id,
                       "--mqtt": mqtt, "--embedded-broker": embedded_broker},
            prefix=pick(prefix, "prefix"), tls=tls, batch_size=batch_size, stream=stream,
            replicas=replicas, retention=retention, max_age=max_age,
            max_ack_pending=max_ack_pending, ack_wait=ack_wait,
        )  # fmt: skip

    console = err_console()
    handler = _WarningLines(level=logging.WARNING)
    logger = logging.getLogger("edgekit.collector")
    logger.addHandler(handler)

    def started(what: str) -> None:
        console.print(f"{what} (Ctrl-C to stop)", highlight=False, soft_wrap=True)

    stop = threading.Event()
    previous = _on_signals(stop)
    try:
        if nats_config is not None:
            from edgekit.collector import serve_nats

            stats = serve_nats(
                nats_config, pick(db, "db") or DEFAULT_DB_URL, workers=workers,
                duration_s=duration, stop=stop, on_started=started,
            )  # fmt: skip
        else:
            stats = serve(
                pick(db, "db") or DEFAULT_DB_URL,
                broker=pick(broker, "broker") or DEFAULT_BROKER_URL,
                client_id=pick(client_id, "collector_id"),
                share_group=share,
                workers=workers,
                embedded_broker=embedded_broker,
                tls_files=TlsFiles(*(Path(f) if f else None for f in tls)),
                batch_size=batch_size,
                duration_s=duration,
                stop=stop,
                on_started=started,
                **session,
            )
    finally:
        _restore_signals(previous)
        logger.removeHandler(handler)
    console.print(
        f"stored {stats.stored} reports ({stats.duplicates} duplicates dropped), "
        f"{stats.status_changes} status changes, {stats.rejected} rejected; "
        f"{stats.acked} messages acknowledged",
        highlight=False,
        soft_wrap=True,
    )


def _version(value: str, *, given: bool) -> MqttVersion:
    try:
        return MqttVersion(value)
    except ValueError:
        where = "--mqtt" if given else env_var("mqtt")
        raise ConfigError(f"setting 'mqtt' from {where}: {value!r} is not 5 or 3.1.1") from None


_Handlers = dict[int, object]


def _on_signals(stop: threading.Event) -> _Handlers:
    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous: _Handlers = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handle)
    return previous


def _restore_signals(previous: _Handlers) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]
