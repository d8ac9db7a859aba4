"""The broker and TLS options ``edgekit daemon`` and ``edgekit collect`` share: one spelling, one
help text, one reading of their ``EDGEKIT_*`` variables.

The commands read the environment once (:func:`environment`) and pass it down; flags win over
variables. Defaults shown in the help come from the settings that hold them.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated

import typer

from edgekit._env import env_var
from edgekit.mqtt import SessionOptions
from edgekit.vocab import MqttVersion


def environment() -> dict[str, str]:
    """A snapshot of the process environment: the one place the CLI reads it."""
    return dict(os.environ)


def from_env(environ: dict[str, str], name: str) -> str | None:
    """The value ``environ`` gives option ``name``; an empty variable counts as unset."""
    return environ.get(env_var(name)) or None


def _session_default(name: str) -> object:
    return next(f.default for f in dataclasses.fields(SessionOptions) if f.name == name)


def _help(text: str, name: str) -> str:
    return f"{text} [env: {env_var(name)}]"


Broker = Annotated[
    str | None,
    typer.Option(
        "--broker",
        help=_help(
            "MQTT broker: mqtt://[user[:password]@]host[:port], or mqtts:// for TLS "
            "(tcp:// and ssl:// are the same two).",
            "broker",
        ),
        show_default=False,
    ),
]
CaFile = Annotated[
    Path | None,
    typer.Option(
        "--ca-file",
        help=_help(
            "mqtts: CA certificate(s) to verify the broker [default: system CAs].", "ca_file"
        ),
        show_default=False,
    ),
]
Certfile = Annotated[
    Path | None,
    typer.Option(
        "--certfile",
        help=_help("mqtts: the client certificate to present, for brokers that ask.", "certfile"),
        show_default=False,
    ),
]
Keyfile = Annotated[
    Path | None,
    typer.Option(
        "--keyfile",
        help=_help("mqtts: the client certificate's private key.", "keyfile"),
        show_default=False,
    ),
]
Mqtt = Annotated[
    MqttVersion | None,
    typer.Option(
        "--mqtt",
        help=_help(
            "MQTT protocol version; 3.1.1 for brokers without MQTT 5 (the embedded broker) "
            f"[default: {_session_default('mqtt_version')}].",
            "mqtt",
        ),
        show_default=False,
    ),
]
Prefix = Annotated[
    str | None,
    typer.Option(
        "--prefix",
        help=_help(
            f"Topic prefix the boards publish under [default: {_session_default('prefix')}].",
            "prefix",
        ),
        show_default=False,
    ),
]
