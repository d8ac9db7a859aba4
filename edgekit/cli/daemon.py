"""``edgekit daemon``: measure a bundle on the board every interval and report over MQTT.

Every setting comes from a flag, else its ``EDGEKIT_*`` variable, else the TOML config file
(``--config``), else its default (:mod:`edgekit.runtime.daemon_settings`, where each default is
written once). The environment is read here, once.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from edgekit._env import env_var
from edgekit.cli import _mqtt_options as mqtt_options
from edgekit.cli._output import err_console, native_stderr_diverted
from edgekit.runtime.daemon_settings import DaemonSettings, resolve_settings
from edgekit.vocab import BackendName, PixelRange


def _help(text: str, name: str, *, default: str | None = None) -> str:
    """Help naming the variable and the default: ``default`` if given, else the setting's."""
    field = DaemonSettings.model_fields.get(name)
    value = default or (field.default if field is not None else None)
    shown = f" [default: {value}]" if value is not None else ""
    # Escaped: Typer renders help as rich markup, which would swallow the brackets.
    return f"{text}{shown} [env: {env_var(name)}]"


def daemon(
    bundle: Annotated[
        Path | None,
        typer.Argument(
            help="Bundle directory [or EDGEKIT_BUNDLE, or 'bundle' in the config file].",
            show_default=False,
        ),
    ] = None,
    broker: mqtt_options.Broker = None,
    device_id: Annotated[
        str | None,
        typer.Option(
            help=_help("This board's id in topics and reports.", "device_id", default="hostname"),
            show_default=False,
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            help=_help("Seconds between measurement windows.", "interval"),
            show_default=False,
        ),
    ] = None,
    window: Annotated[
        int | None,
        typer.Option(
            help=_help("Timed inference runs per window.", "window"),
            show_default=False,
        ),
    ] = None,
    warmup: Annotated[
        int | None,
        typer.Option(
            help=_help("Untimed runs before each window's timed ones.", "warmup"),
            show_default=False,
        ),
    ] = None,
    reports: Annotated[
        int | None,
        typer.Option(
            help=_help(
                "Exit after this many reports (cron-style use).", "reports", default="run on"
            ),
            show_default=False,
        ),
    ] = None,
    outbox: Annotated[
        Path | None,
        typer.Option(
            help=_help(
                "Durable outbox file.", "outbox", default="~/.local/state/edgekit/DEVICE.outbox"
            ),
            show_default=False,
        ),
    ] = None,
    outbox_max_mb: Annotated[
        float | None,
        typer.Option(
            help=_help(
                "Bound of the outbox in MiB; the oldest reports are dropped (and counted) past it.",
                "outbox_max_mb",
            ),
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help=_help("TOML file with any of these settings (flags and env win).", "config"),
            show_default=False,
        ),
    ] = None,
    watch: Annotated[
        Path | None,
        typer.Option(
            help=_help("Folder of inputs (.npy or images) to run as they arrive.", "watch"),
            show_default=False,
        ),
    ] = None,
    watch_out: Annotated[
        Path | None,
        typer.Option(
            help=_help(
                "Where results of watched inputs go.", "watch_out", default="beside each input"
            ),
            show_default=False,
        ),
    ] = None,
    pixel_range: Annotated[
        PixelRange | None,
        typer.Option(
            help=_help("How watched images' pixels are scaled.", "pixel_range"),
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        BackendName | None,
        typer.Option(
            help=_help("Interpreter to run the bundle.", "backend", default="best installed"),
            show_default=False,
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            help=_help("Interpreter threads.", "threads", default="the profile's"),
            show_default=False,
        ),
    ] = None,
    ca_file: mqtt_options.CaFile = None,
    certfile: mqtt_options.Certfile = None,
    keyfile: mqtt_options.Keyfile = None,
    mqtt: mqtt_options.Mqtt = None,
    flush_timeout: Annotated[
        float | None,
        typer.Option(
            help=_help(
                "On stop, seconds to wait for the broker to acknowledge what is pending; "
                "the rest stays in the outbox.",
                "flush_timeout",
            ),
            show_default=False,
        ),
    ] = None,
    trust_key: Annotated[
        Path | None,
        typer.Option(
            help=_help("Load only a bundle signed by this Ed25519 public key.", "trust_key"),
            show_default=False,
        ),
    ] = None,
    prefix: mqtt_options.Prefix = None,
    deploy_dir: Annotated[
        Path | None,
        typer.Option(
            help=_help(
                "Take deployments from this board's deploy topic; bundles are kept here and "
                "BUNDLE is only the first one.",
                "deploy_dir",
                default="no deployments",
            ),
            show_default=False,
        ),
    ] = None,
    store_ca_file: Annotated[
        Path | None,
        typer.Option(
            help=_help(
                "CA certificate(s) of an https:// bundle store.",
                "store_ca_file",
                default="system CAs",
            ),
            show_default=False,
        ),
    ] = None,
    reselect: Annotated[
        bool | None,
        typer.Option(
            "--reselect",
            help=_help(
                "Measure a several-candidate bundle's candidates again instead of the choice "
                "remembered for it on this host.",
                "reselect",
                default="remembered",
            ),
            show_default=False,
        ),
    ] = None,
    select_seconds: Annotated[
        float | None,
        typer.Option(
            help=_help("Time budget for timing the candidates.", "select_seconds", default="20"),
            show_default=False,
        ),
    ] = None,
    selection_cache: Annotated[
        Path | None,
        typer.Option(
            help=_help(
                "Folder where the choice among a bundle's candidates is remembered per host.",
                "selection_cache",
                default="the outbox's folder",
            ),
            show_default=False,
        ),
    ] = None,
) -> None:
    """Measure BUNDLE every interval (latency, accuracy, memory) and report each window over
    MQTT, keeping every report in a durable outbox until the broker acknowledges it."""
    environ = mqtt_options.environment()
    if config is None and (named := mqtt_options.from_env(environ, "config")):
        config = Path(named)
    flags: dict[str, Any] = {
        "bundle": bundle, "broker": broker, "device_id": device_id, "interval": interval,
        "window": window, "warmup": warmup, "reports": reports, "outbox": outbox,
        "outbox_max_mb": outbox_max_mb, "watch": watch, "watch_out": watch_out,
        "pixel_range": pixel_range, "backend": backend, "threads": threads, "ca_file": ca_file,
        "certfile": certfile, "keyfile": keyfile, "mqtt": mqtt, "flush_timeout": flush_timeout,
        "trust_key": trust_key, "prefix": prefix, "deploy_dir": deploy_dir,
        "store_ca_file": store_ca_file, "reselect": reselect, "select_seconds": select_seconds,
        "selection_cache": selection_cache,
    }  # fmt: skip
    _run(resolve_settings(flags=flags, environ=environ, config_file=config))


def _run(settings: DaemonSettings) -> None:
    """Run the daemon in the foreground; SIGTERM or SIGINT stop it after the current window."""
    from edgekit.runtime.daemon import Daemon

    console = err_console()
    device = settings.device_id

    def say(message: str) -> None:
        console.print(
            f"edgekit daemon [{device}]: {message}", markup=False, highlight=False, soft_wrap=True
        )

    worker = Daemon(settings, say=say)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        say(f"{signal.Signals(signum).name}: finishing the window, then stopping")
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with native_stderr_diverted():
        worker.run()
