"""The daemon's settings, declared once: every default is written here and nowhere else.

Each setting can come from any of these layers; the first that has it wins:

1. a flag of ``edgekit daemon`` (``--interval``; the bundle is the BUNDLE argument),
2. an environment variable ``EDGEKIT_<NAME>`` (``EDGEKIT_INTERVAL``),
3. the TOML config file (``interval = 60``),
4. the default below.

The CLI reads the environment once and passes it here with the flags; nothing in this module
reads ``os.environ``. A setting that does not validate is a :class:`~edgekit.errors.ConfigError`
whose one line names the setting and the layer it came from.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, PlainValidator, PrivateAttr, ValidationError, model_validator

from edgekit._env import env_var
from edgekit.errors import ConfigError, MqttConfigError
from edgekit.mqtt import BrokerAddress, BrokerSettings, SessionOptions, TlsFiles, check_prefix
from edgekit.runtime.host import default_device_id
from edgekit.runtime.outbox import DEFAULT_MAX_BYTES
from edgekit.schema import DEFAULT_PREFIX, DeviceId
from edgekit.values import Frozen
from edgekit.vocab import BackendName, MqttVersion, PixelRange

_MIB = 2**20


def _address(value: object) -> BrokerAddress:
    if isinstance(value, BrokerAddress):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a broker URL string")
    try:
        return BrokerAddress.parse(value)
    except MqttConfigError as exc:
        raise ValueError(str(exc)) from exc


def _prefix(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    try:
        check_prefix(value)
    except MqttConfigError as exc:
        raise ValueError(str(exc)) from exc
    return value


class DaemonSettings(Frozen):
    """Everything ``edgekit daemon`` needs; see the module docstring for where each comes from."""

    bundle: Path
    broker: Annotated[BrokerAddress, PlainValidator(_address)]
    device_id: DeviceId = Field(default_factory=default_device_id)
    # None: <state dir>/<device_id>.outbox, filled in by resolve_settings.
    outbox: Path | None = None
    interval: float = Field(60.0, ge=0)
    window: int = Field(100, ge=1)
    warmup: int = Field(10, ge=0)
    reports: int | None = Field(None, ge=1)  # stop after this many (cron-style use, tests)
    outbox_max_mb: float = Field(DEFAULT_MAX_BYTES / _MIB, gt=0)
    backend: BackendName | None = None
    threads: int | None = Field(None, ge=1)
    watch: Path | None = None
    watch_out: Path | None = None
    pixel_range: PixelRange = PixelRange.UNIT
    prefix: Annotated[str, PlainValidator(_prefix)] = DEFAULT_PREFIX
    ca_file: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    mqtt: MqttVersion = MqttVersion.V5
    trust_key: Path | None = None  # load only a bundle signed by this public key
    flush_timeout: float = Field(10.0, ge=0)
    # A bundle with several candidates: measure them again instead of the remembered choice;
    # the time budget for timing them; where choices are remembered (default: the outbox's dir).
    reselect: bool = False
    select_seconds: float = Field(20.0, gt=0)
    selection_cache: Path | None = None
    # Set: take deployments from the deploy topic; bundles live here, `bundle` is the first one.
    deploy_dir: Path | None = None
    store_ca_file: Path | None = None  # CA of an https:// bundle store (default: system CAs)

    _broker: BrokerSettings = PrivateAttr()

    @model_validator(mode="after")
    def _check_broker(self) -> DaemonSettings:
        # Raises MqttConfigError (not a ValueError, so pydantic lets it through) naming the
        # setting; resolve_settings adds the layer it came from.
        self._broker = BrokerSettings(
            address=self.broker,
            session=SessionOptions(
                client_id=f"edgekit-{self.device_id}",
                prefix=self.prefix,
                mqtt_version=self.mqtt,
            ),
            tls_files=TlsFiles(self.ca_file, self.certfile, self.keyfile),
        )
        return self

    @property
    def broker_settings(self) -> BrokerSettings:
        """How the reporter connects: the broker, TLS files and this device's session."""
        return self._broker

    @property
    def outbox_max_bytes(self) -> int:
        """The outbox bound in bytes."""
        return int(self.outbox_max_mb * _MIB)


# MQTT layer setting names -> the daemon's.
_FROM_MQTT = {"mqtt_version": "mqtt", "client_id": "device_id"}


def flag(name: str) -> str:
    """How the command line spells setting ``name``."""
    return "the BUNDLE argument" if name == "bundle" else "--" + name.replace("_", "-")


def load_config_file(path: Path) -> dict[str, Any]:
    """The settings a TOML config file holds; ConfigError if it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from exc


def resolve_settings(
    *,
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    config_file: Path | None = None,
) -> DaemonSettings:
    """Layer the flags (None: not given), the ``EDGEKIT_*`` variables of ``environ`` and the
    config file over the defaults, validate once; ConfigError naming the setting and layer."""
    file = load_config_file(config_file) if config_file is not None else {}
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    layers = (
        (file, lambda key: f"config file {config_file}"),
        (_from_environ(environ), env_var),
        ({k: v for k, v in flags.items() if v is not None}, flag),
    )
    for layer, where in layers:  # lowest first: each overrides what came before
        for key, value in layer.items():
            values[key] = value
            origin[key] = where(key)
    try:
        settings = DaemonSettings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from exc
    except MqttConfigError as exc:
        name = _FROM_MQTT.get(exc.setting or "", exc.setting or "broker")
        raise ConfigError(f"setting {name!r} from {_origin(name, origin)}: {exc}") from exc
    if settings.outbox is None:
        state = Path(environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        outbox = state / "edgekit" / f"{settings.device_id}.outbox"
        settings = settings.model_copy(update={"outbox": outbox})
    return settings


def _from_environ(environ: Mapping[str, str]) -> dict[str, str]:
    # An empty variable counts as unset, as it does for most tools.
    named = {name: environ.get(env_var(name)) for name in DaemonSettings.model_fields}
    return {name: value for name, value in named.items() if value}


def _origin(name: str, origin: Mapping[str, str]) -> str:
    return origin.get(name, "the defaults")


def _describe(exc: ValidationError, origin: Mapping[str, str]) -> str:
    errors = exc.errors()
    # An unknown key first: a misspelt setting explains the "missing" one it was meant to be.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    name = str(first["loc"][0]) if first["loc"] else ""
    if first["type"] == "missing":
        return f"no {name}: pass {flag(name)}, set {env_var(name)} or {name!r} in the config file"
    if first["type"] == "extra_forbidden":
        return f"{_origin(name, origin)}: unknown key {name!r}"
    message = first["msg"].removeprefix("Value error, ")
    return f"setting {name!r} from {_origin(name, origin)}: {message}"
