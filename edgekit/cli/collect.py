"""``edgekit collect``: subscribe to a fleet's reports over MQTT and store them in a database."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from edgekit.cli._output import err_console, warning_line
from edgekit.errors import ReporterError
from edgekit.vocab import MqttVersion

_DEFAULT_BROKER = "mqtt://127.0.0.1:1883"


class _WarningLines(logging.Handler):
    """The collector's log warnings as ``edgekit: warning:`` lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        warning_line(record.getMessage())


def collect(
    broker: Annotated[
        str,
        typer.Option(
            envvar="EDGEKIT_BROKER",
            help="MQTT broker URL: mqtt://host:port or mqtt://user:password@host:port; "
            "mqtts:// for TLS.",
        ),
    ] = _DEFAULT_BROKER,
    db: Annotated[
        str,
        typer.Option(
            envvar="EDGEKIT_DB",
            help="SQLAlchemy database URL, e.g. sqlite:///edgekit.db or "
            "postgresql+psycopg://user@host/db.",
        ),
    ] = "sqlite:///edgekit.db",
    share: Annotated[
        str | None,
        typer.Option(
            help="Shared-subscription group: collectors with the same group split the reports.",
            show_default=False,
        ),
    ] = None,
    prefix: Annotated[str, typer.Option(help="Topic prefix the devices publish under.")] = (
        "edgekit/v1"
    ),
    client_id: Annotated[
        str | None,
        typer.Option(
            envvar="EDGEKIT_COLLECTOR_ID",
            help="Fixed MQTT client id of this collector's persistent session; each collector "
            "of a share group needs its own. Default: edgekit-collector, or "
            "edgekit-collector-GROUP-HOSTNAME with --share.",
            show_default=False,
        ),
    ] = None,
    mqtt: Annotated[
        MqttVersion,
        typer.Option(help="MQTT protocol version (the embedded broker speaks 3.1.1 only)."),
    ] = MqttVersion.V5,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            envvar="EDGEKIT_CA_FILE",
            help="mqtts: CA certificate(s) to verify the broker [default: system CAs].",
            show_default=False,
        ),
    ] = None,
    certfile: Annotated[
        Path | None,
        typer.Option(
            envvar="EDGEKIT_CERTFILE",
            help="mqtts: this collector's client certificate.",
            show_default=False,
        ),
    ] = None,
    keyfile: Annotated[
        Path | None,
        typer.Option(
            envvar="EDGEKIT_KEYFILE",
            help="mqtts: the client certificate's private key.",
            show_default=False,
        ),
    ] = None,
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
) -> None:
    """Store the fleet's reports, statuses and rejected messages until Ctrl-C or SIGTERM.

    A message is acknowledged only after its row is committed; repeated message ids are dropped.
    """
    import socket

    from edgekit.collector import (
        BrokerUrl,
        Collector,
        CollectorSettings,
        EmbeddedBroker,
        Store,
    )
    from edgekit.collector.workers import run_workers

    address = BrokerUrl.parse(broker)
    version = mqtt
    if embedded_broker:
        if share or workers > 1:
            raise ReporterError(
                "--share and --workers need a broker with shared subscriptions, "
                "not --embedded-broker"
            )
        version = MqttVersion.V311
    if workers > 1 and share is None:
        share = "edgekit"
    if client_id is None:
        client_id = (
            f"edgekit-collector-{share}-{socket.gethostname()}"[:120]
            if share
            else "edgekit-collector"
        )
    settings = CollectorSettings(
        broker=address,
        client_id=client_id,
        prefix=prefix,
        share_group=share,
        mqtt_version=version,
        batch_size=batch_size,
        ca_file=ca_file,
        certfile=certfile,
        keyfile=keyfile,
    )
    handler = _WarningLines(level=logging.WARNING)
    logger = logging.getLogger("edgekit.collector")
    logger.addHandler(handler)
    stop = threading.Event()
    previous = _on_signals(stop)
    console = err_console()
    try:
        # Opened here first in every case: a bad URL is reported before anything connects.
        with Store(db) as store:
            where = f"{settings.report_filter} from {address} into {store.display_url}"
            if workers > 1:
                store.close()
                stats = run_workers(
                    settings,
                    db,
                    workers=workers,
                    duration_s=duration,
                    stop=stop,
                    on_started=lambda: console.print(
                        f"collecting {where} with {workers} processes (Ctrl-C to stop)",
                        highlight=False,
                        soft_wrap=True,
                    ),
                )
            else:
                local = EmbeddedBroker(address.port, host=address.host) if embedded_broker else None
                if local is not None:
                    local.start()
                try:
                    with Collector(settings, store) as collector:
                        console.print(
                            f"collecting {where} (Ctrl-C to stop)", highlight=False, soft_wrap=True
                        )
                        collector.run(duration_s=duration, stop=stop)
                    stats = collector.stats
                finally:
                    if local is not None:
                        local.stop()
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
