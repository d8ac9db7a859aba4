"""The daemon's settings: one model, layered flags > EDGEKIT_* > config file > defaults, for
every setting; a bad one is a ConfigError naming the setting and the layer it came from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgekit.errors import ConfigError
from edgekit.runtime.daemon_settings import DaemonSettings, resolve_settings
from edgekit.vocab import BackendName, MqttVersion, PixelRange

# Every setting, with a value for each layer: (file (TOML), environment (text), flag (typed)).
# Successive layers differ, so the winner is always visible.
LAYERED = {
    "bundle": ("/file/bundle", "/env/bundle", Path("/flag/bundle")),
    "broker": ("mqtts://file:8883", "mqtts://env:8883", "mqtts://flag:8883"),
    "device_id": ("from-file", "from-env", "from-flag"),
    "outbox": ("/file/outbox", "/env/outbox", Path("/flag/outbox")),
    "interval": (1.5, "2.5", 3.5),
    "window": (11, "12", 13),
    "warmup": (1, "2", 3),
    "reports": (4, "5", 6),
    "outbox_max_mb": (1.0, "2.0", 3.0),
    "backend": ("litert", "onnxruntime", BackendName.TFLITE_RUNTIME),
    "threads": (1, "2", 3),
    "watch": ("/file/in", "/env/in", Path("/flag/in")),
    "watch_out": ("/file/out", "/env/out", Path("/flag/out")),
    "pixel_range": ("0-255", "-1-1", PixelRange.UNIT),
    "prefix": ("file/v1", "env/v1", "flag/v1"),
    "ca_file": ("/file/ca.pem", "/env/ca.pem", Path("/flag/ca.pem")),
    "certfile": ("/file/cert.pem", "/env/cert.pem", Path("/flag/cert.pem")),
    "keyfile": ("/file/key.pem", "/env/key.pem", Path("/flag/key.pem")),
    "mqtt": ("3.1.1", "5", MqttVersion.V311),
    "trust_key": ("/file/fleet.pub", "/env/fleet.pub", Path("/flag/fleet.pub")),
    "flush_timeout": (1.0, "2.0", 3.0),
    "deploy_dir": ("/file/deploy", "/env/deploy", Path("/flag/deploy")),
    "store_ca_file": ("/file/store-ca.pem", "/env/store-ca.pem", Path("/flag/store-ca.pem")),
    "reselect": (True, "False", True),
    "select_seconds": (1.5, "2.5", 3.5),
    "selection_cache": ("/file/sel", "/env/sel", Path("/flag/sel")),
}
# What the settings needs besides the one under test (a client key needs its certificate).
BASE = {"bundle": "/base/bundle", "broker": "mqtts://base:8883", "certfile": "/base/cert.pem"}


def _shown(settings: DaemonSettings, name: str) -> str:
    value = getattr(settings, name)
    return str(value.url if name == "broker" else value)


def test_every_setting_is_a_field_of_the_one_model():
    assert set(LAYERED) == set(DaemonSettings.model_fields)


def test_every_setting_has_a_flag_of_edgekit_daemon():
    """The first layer exists for every setting: the command's parameters are exactly the
    model's fields (BUNDLE is the argument), plus --config, which says where the file is."""
    import inspect

    from edgekit.cli.daemon import daemon

    assert set(inspect.signature(daemon).parameters) == set(DaemonSettings.model_fields) | {
        "config"
    }


@pytest.mark.parametrize("name", sorted(LAYERED))
def test_flags_beat_environment_beats_file_beats_default(name, tmp_path):
    file_value, env_value, flag_value = LAYERED[name]
    config = tmp_path / "daemon.toml"
    base = {k: v for k, v in BASE.items() if k != name}

    def resolved(*, file: bool, env: bool, flag: bool) -> DaemonSettings:
        values = {**base, **({name: file_value} if file else {})}
        config.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in values.items()))
        environ = {f"EDGEKIT_{name.upper()}": env_value} if env else {}
        return resolve_settings(
            flags={name: flag_value if flag else None}, environ=environ, config_file=config
        )

    if name not in ("bundle", "broker"):  # the two settings without a default
        assert _shown(resolved(file=False, env=False, flag=False), name) == str(_default(name))
    assert _shown(resolved(file=True, env=False, flag=False), name) == str(file_value)
    assert _shown(resolved(file=True, env=True, flag=False), name) == str(env_value)
    assert _shown(resolved(file=True, env=True, flag=True), name) == str(flag_value)


def _default(name: str) -> object:
    if name == "outbox":  # derived: the state folder (no XDG_STATE_HOME here), the device id
        device = _default("device_id")
        return Path.home() / ".local" / "state" / "edgekit" / f"{device}.outbox"
    return DaemonSettings.model_fields[name].get_default(call_default_factory=True)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f'"{value}"' if isinstance(value, str) else str(value)


def test_the_default_outbox_is_in_the_state_folder_named_for_the_device(tmp_path):
    environ = {"XDG_STATE_HOME": str(tmp_path / "state")}
    flags = {"bundle": Path("b"), "broker": "mqtt://broker", "device_id": "pi-07"}
    settings = resolve_settings(flags=flags, environ=environ)
    assert settings.outbox == tmp_path / "state" / "edgekit" / "pi-07.outbox"
    assert settings.broker_settings.session.client_id == "edgekit-pi-07"
    assert settings.outbox_max_bytes == 32 * 2**20


def test_only_edgekit_variables_count_and_empty_ones_are_unset():
    environ = {"WARMUP": "99", "EDGEKIT_WARMUP": "", "EDGEKIT_WINDOW": "7"}
    flags = {"bundle": Path("b"), "broker": "mqtt://broker"}
    settings = resolve_settings(flags=flags, environ=environ)
    assert (settings.warmup, settings.window) == (10, 7)


def _error(tmp_path: Path, *, flags=None, environ=None, file: str | None = None) -> str:
    config = None
    if file is not None:
        config = tmp_path / "daemon.toml"
        config.write_text(file)
    with pytest.raises(ConfigError) as caught:
        resolve_settings(
            flags={"bundle": Path("b"), "broker": "mqtt://broker", **(flags or {})},
            environ=environ or {},
            config_file=config,
        )
    return str(caught.value)


def test_config_faults_name_the_setting_and_its_layer(tmp_path):
    config = tmp_path / "daemon.toml"
    assert _error(tmp_path, environ={"EDGEKIT_WARMUP": "-1"}) == (
        "setting 'warmup' from EDGEKIT_WARMUP: Input should be greater than or equal to 0"
    )
    assert _error(tmp_path, environ={"EDGEKIT_INTERVAL": "soon"}).startswith(
        "setting 'interval' from EDGEKIT_INTERVAL: Input should be a valid number"
    )
    assert _error(tmp_path, file="outbox_max_mb = 0\n") == (
        f"setting 'outbox_max_mb' from config file {config}: Input should be greater than 0"
    )
    assert _error(tmp_path, flags={"broker": "http://u:hunter2@broker"}) == (
        "setting 'broker' from --broker: broker URL 'http://u:***@broker' must start with "
        "mqtt://, mqtts://, tcp:// or ssl://, not http://"
    )
    assert _error(tmp_path, flags={"prefix": "edgekit/#"}).startswith(
        "setting 'prefix' from --prefix: topic prefix 'edgekit/#'"
    )
    assert _error(tmp_path, environ={"EDGEKIT_DEVICE_ID": "pi/+"}).startswith(
        "setting 'device_id' from EDGEKIT_DEVICE_ID: String should match pattern"
    )
    assert _error(tmp_path, environ={"EDGEKIT_MQTT": "4"}).startswith(
        "setting 'mqtt' from EDGEKIT_MQTT: Input should be '5' or '3.1.1'"
    )
    assert _error(tmp_path, file='ca_file = "/etc/ca.pem"\n') == (
        f"setting 'ca_file' from config file {config}: TLS files given for a plain mqtt:// "
        "broker (mqtt://broker:1883): use mqtts://"
    )
    assert _error(
        tmp_path, environ={"EDGEKIT_KEYFILE": "/k.pem"}, flags={"broker": "mqtts://b"}
    ) == ("setting 'keyfile' from EDGEKIT_KEYFILE: a client keyfile without its certfile")


def test_file_faults_name_the_file(tmp_path):
    config = tmp_path / "daemon.toml"
    assert _error(tmp_path, file='brokr = "mqtt://x"\n') == (
        f"config file {config}: unknown key 'brokr'"
    )
    assert _error(tmp_path, file="interval = [\n").startswith(f"config file {config}: invalid TOML")
    with pytest.raises(ConfigError, match=re.escape(f"cannot read config file {tmp_path / 'no'}")):
        resolve_settings(flags={}, environ={}, config_file=tmp_path / "no")


def test_missing_settings_say_where_they_can_come_from():
    with pytest.raises(ConfigError) as caught:
        resolve_settings(flags={"broker": "mqtt://broker"}, environ={})
    assert str(caught.value) == (
        "no bundle: pass the BUNDLE argument, set EDGEKIT_BUNDLE or 'bundle' in the config file"
    )
    with pytest.raises(ConfigError) as caught:
        resolve_settings(flags={"bundle": Path("b")}, environ={})
    assert str(caught.value) == (
        "no broker: pass --broker, set EDGEKIT_BROKER or 'broker' in the config file"
    )


def test_the_password_stays_out_of_the_settings_repr():
    flags = {"bundle": Path("b"), "broker": "mqtt://device:hunter2@broker"}
    settings = resolve_settings(flags=flags, environ={})
    assert "hunter2" not in repr(settings)
    assert settings.broker.password == "hunter2"


def test_a_misspelt_key_is_reported_before_the_setting_it_leaves_missing(tmp_path):
    config = tmp_path / "daemon.toml"
    config.write_text('brokr = "mqtt://broker"\n')
    with pytest.raises(ConfigError) as caught:
        resolve_settings(flags={"bundle": Path("b")}, environ={}, config_file=config)
    assert str(caught.value) == f"config file {config}: unknown key 'brokr'"
