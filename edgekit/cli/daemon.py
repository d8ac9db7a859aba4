"""``edgekit daemon``: measure a bundle on the board every interval and report over MQTT.

Settings come from flags, then ``EDGEKIT_*`` environment variables, then a TOML config file
(``--config``), then defaults: flags win.
"""

from __future__ import annotations

import os
import signal
import tomllib
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekit.cli._output import err_console, native_stderr_diverted
from edgekit.errors import EdgekitError
from edgekit.vocab import PixelRange


class DaemonConfig(BaseModel):
    """The keys a daemon config file may hold (the flags' names, with underscores)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bundle: Path | None = None
    broker: str | None = None
    device_id: str | None = None
    interval: float | None = Field(default=None, ge=0)
    window: int | None = Field(default=None, ge=1)
    warmup: int | None = Field(default=None, ge=0)
    reports: int | None = Field(default=None, ge=1)
    outbox: Path | None = None
    outbox_max_mb: float | None = Field(default=None, gt=0)
    backend: str | None = None
    threads: int | None = Field(default=None, ge=1)
    watch: Path | None = None
    watch_out: Path | None = None
    prefix: str | None = None
    ca_file: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    mqtt: str | None = None
    trust_key: Path | None = None
    flush_timeout: float | None = Field(default=None, ge=0)


def _load_config(path: Path | None) -> DaemonConfig:
    if path is None:
        return DaemonConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EdgekitError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise EdgekitError(f"config file {path}: invalid TOML: {exc}") from exc
    try:
        return DaemonConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        what = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].lower()
        raise EdgekitError(f"config file {path}: {what}: {key!r}") from exc


def daemon(
    bundle: Annotated[
        Path | None,
        typer.Argument(
            help="Bundle directory [or 'bundle' in the config file].", show_default=False
        ),
    ] = None,
    broker: Annotated[
        str | None,
        typer.Option(
            envvar="EDGEKIT_BROKER",
            show_default=False,
            help="mqtt://[user[:password]@]host[:port] or mqtts://...",
        ),
    ] = None,
    device_id: Annotated[
        str | None,
        typer.Option(
            envvar="EDGEKIT_DEVICE_ID",
            show_default=False,
            help="This board's id in topics and reports [default: from the hostname].",
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            envvar="EDGEKIT_INTERVAL",
            show_default=False,
            help="Seconds between measurement windows [default: 60].",
        ),
    ] = None,
    window: Annotated[
        int | None,
        typer.Option(
            envvar="EDGEKIT_WINDOW",
            show_default=False,
            help="Timed inference runs per window [default: 100].",
        ),
    ] = None,
    reports: Annotated[
        int | None,
        typer.Option(
            envvar="EDGEKIT_REPORTS",
            show_default=False,
            help="Exit after this many reports (cron-style use) [default: run on].",
        ),
    ] = None,
    outbox: Annotated[
        Path | None,
        typer.Option(
            envvar="EDGEKIT_OUTBOX",
            show_default=False,
            help="Durable outbox file [default: ~/.local/state/edgekit/DEVICE.outbox].",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            envvar="EDGEKIT_CONFIG",
            show_default=False,
            help="TOML file with any of these settings (flags and env win).",
        ),
    ] = None,
    watch: Annotated[
        Path | None,
        typer.Option(
            envvar="EDGEKIT_WATCH",
            show_default=False,
            help="Folder of inputs (.npy or images) to run as they arrive.",
        ),
    ] = None,
    watch_out: Annotated[
        Path | None,
        typer.Option(
            envvar="EDGEKIT_WATCH_OUT",
            show_default=False,
            help="Where results of watched inputs go [default: beside each input].",
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            envvar="EDGEKIT_BACKEND",
            show_default=False,
            help="litert, tflite-runtime or onnxruntime [default: best installed].",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            envvar="EDGEKIT_THREADS",
            show_default=False,
            help="Interpreter threads [default: the profile's].",
        ),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            envvar="EDGEKIT_CA_FILE",
            show_default=False,
            help="mqtts: CA certificate(s) to verify the broker [default: system CAs].",
        ),
    ] = None,
    certfile: Annotated[
        Path | None,
        typer.Option(
            envvar="EDGEKIT_CERTFILE",
            show_default=False,
            help="mqtts: this device's client certificate.",
        ),
    ] = None,
    keyfile: Annotated[
        Path | None,
        typer.Option(
            envvar="EDGEKIT_KEYFILE",
            show_default=False,
            help="mqtts: the client certificate's private key.",
        ),
    ] = None,
    mqtt: Annotated[
        str | None,
        typer.Option(
            envvar="EDGEKIT_MQTT",
            show_default=False,
            help="MQTT protocol version: 5 or 3.1.1 (brokers without MQTT 5) [default: 5].",
        ),
    ] = None,
    flush_timeout: Annotated[
        float | None,
        typer.Option(
            envvar="EDGEKIT_FLUSH_TIMEOUT",
            show_default=False,
            help="On stop, seconds to wait for the broker to acknowledge what is pending "
            "[default: 10]; the rest stays in the outbox.",
        ),
    ] = None,
    trust_key: Annotated[
        Path | None,
        typer.Option(
            envvar="EDGEKIT_TRUST_KEY",
            show_default=False,
            help="Load only a bundle signed by this Ed25519 public key.",
        ),
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option(
            envvar="EDGEKIT_PREFIX", show_default=False, help="Topic prefix [default: edgekit/v1]."
        ),
    ] = None,
) -> None:
    """Measure BUNDLE every interval (latency, accuracy, memory) and report each window over
    MQTT, keeping every report in a durable outbox until the broker acknowledges it."""
    from edgekit.runtime.daemon import Daemon, DaemonSettings
    from edgekit.runtime.host import default_device_id
    from edgekit.runtime.reporter import BrokerSettings
    from edgekit.schema import DEFAULT_PREFIX

    file = _load_config(config)
    flags: dict[str, Any] = {
        "bundle": bundle,
        "broker": broker,
        "device_id": device_id,
        "interval": interval,
        "window": window,
        "reports": reports,
        "outbox": outbox,
        "watch": watch,
        "watch_out": watch_out,
        "backend": backend,
        "threads": threads,
        "ca_file": ca_file,
        "certfile": certfile,
        "keyfile": keyfile,
        "prefix": prefix,
        "mqtt": mqtt,
        "trust_key": trust_key,
        "flush_timeout": flush_timeout,
    }
    merged = file.model_dump() | {k: v for k, v in flags.items() if v is not None}
    settings = DaemonConfig.model_validate(merged)
    if settings.bundle is None:
        raise EdgekitError("no bundle: pass BUNDLE or set 'bundle' in the config file")
    if settings.broker is None:
        raise EdgekitError("no broker: pass --broker, set EDGEKIT_BROKER or 'broker' in --config")
    device = settings.device_id or default_device_id()
    state = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "edgekit"
    run_settings = DaemonSettings(
        bundle=settings.bundle,
        broker=BrokerSettings.from_url(
            settings.broker,
            client_id=f"edgekit-{device}",
            ca_file=settings.ca_file,
            certfile=settings.certfile,
            keyfile=settings.keyfile,
            prefix=settings.prefix or DEFAULT_PREFIX,
            mqtt_version=settings.mqtt or "5",
        ),
        device_id=device,
        outbox=settings.outbox or state / f"{device}.outbox",
        interval_s=60.0 if settings.interval is None else settings.interval,
        window_runs=settings.window or 100,
        warmup=10 if settings.warmup is None else settings.warmup,
        reports=settings.reports,
        backend=settings.backend,
        threads=settings.threads,
        watch=settings.watch,
        watch_out=settings.watch_out,
        pixel_range=PixelRange.UNIT,
        outbox_max_bytes=int((settings.outbox_max_mb or 32) * 2**20),
        trust_key=settings.trust_key,
        flush_timeout_s=10.0 if settings.flush_timeout is None else settings.flush_timeout,
    )
    run_settings.outbox.parent.mkdir(parents=True, exist_ok=True)
    console = err_console()

    def say(message: str) -> None:
        console.print(
            f"edgekit daemon [{device}]: {message}", markup=False, highlight=False, soft_wrap=True
        )

    worker = Daemon(run_settings, say=say)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        say(f"{signal.Signals(signum).name}: finishing the window, then stopping")
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with native_stderr_diverted():
        worker.run()
