"""The shared MQTT layer: one broker address parser, one set of session rules, for both sides.

The board's reporter gets its broker from the daemon's settings, the collector from
``collector_settings`` (what ``edgekit collect``, ``edgekit demo`` and ``serve`` use); both must
accept and refuse exactly the same addresses and prefixes, and never show a password.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgekit.collector import collector_settings
from edgekit.errors import ConfigError, MqttConfigError
from edgekit.mqtt import SCHEMES, BrokerAddress, BrokerSettings, SessionOptions, TlsFiles
from edgekit.runtime.daemon_settings import resolve_settings
from edgekit.vocab import MqttVersion

SECRETS = ("hunter2", "p:ss", "p%3Ass")


def _reporter_side(url: str, **flags: object) -> BrokerSettings:
    settings = resolve_settings(
        flags={"bundle": Path("bundle"), "broker": url, "device_id": "pi-01", **flags},
        environ={},
    )
    assert not any(secret in repr(settings) for secret in SECRETS)
    return settings.broker_settings


def _collector_side(url: str, **options: object) -> BrokerSettings:
    settings = collector_settings(url, **options)  # type: ignore[arg-type]
    assert not any(secret in repr(settings) for secret in SECRETS)
    return settings.broker


def _outcome(side, url: str, **options: object) -> tuple[str, str]:
    """('ok', the address as shown) or ('refused', the reason)."""
    try:
        broker = side(url, **options)
    except ConfigError as exc:
        return "refused", str(exc)
    assert not any(secret in repr(broker) or secret in str(broker.address) for secret in SECRETS)
    return "ok", f"{broker.address} {broker.session.prefix}"


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("mqtt://broker.local", "mqtt://broker.local:1883"),
        ("mqtts://broker.local", "mqtts://broker.local:8883"),
        ("tcp://10.0.0.5:1884", "mqtt://10.0.0.5:1884"),
        ("ssl://broker:8884", "mqtts://broker:8884"),
        ("MQTT://Broker.Local/", "mqtt://broker.local:1883"),
        ("  mqtt://broker:1883\n", "mqtt://broker:1883"),
        ("mqtt://[::1]:1883", "mqtt://[::1]:1883"),
        ("mqtts://dev%40fleet:p%3Ass@[::1]", "mqtts://dev%40fleet@[::1]:8883"),
        ("mqtt://device:hunter2@broker", "mqtt://device@broker:1883"),
        ("mqtt://device:@broker", "mqtt://device@broker:1883"),
        ("http://broker:1883", None),
        ("broker:1883", None),
        ("broker", None),
        ("mqtt://", None),
        ("mqtt://broker:port", None),
        ("mqtt://broker:70000", None),
        ("mqtt://broker:0", None),
        ("mqtt://broker/topic", None),
        ("mqtt://broker?ca=/etc/ca.pem", None),
        ("mqtt://broker#tls", None),
        ("mqtt://:hunter2@broker", None),
        ("mqtt://[::1", None),
        ("mqtt://device:hunter2@broker:nope", None),
        ("http://device:hunter2@broker", None),
        ("device:hunter2@broker", None),
    ],
)
def test_reporter_and_collector_accept_and_refuse_the_same_broker_urls(url, accepted):
    reporter = _outcome(_reporter_side, url)
    collector = _outcome(_collector_side, url)
    if accepted is not None:
        assert reporter == collector == ("ok", f"{accepted} edgekit/v1")
        return
    assert reporter[0] == collector[0] == "refused"
    # The daemon names the setting and where it came from; the reason is the MQTT layer's.
    assert reporter[1] == f"setting 'broker' from --broker: {collector[1]}"
    assert not any(secret in reporter[1] + collector[1] for secret in SECRETS)
    if "device:hunter2" in url:
        assert "device:***@broker" in collector[1]


@pytest.mark.parametrize(
    ("prefix", "ok"),
    [
        ("edgekit/v1", True),
        ("fleet", True),
        ("site-7/edgekit/v1", True),
        ("edgekit/v1/", False),
        ("/edgekit", False),
        ("edgekit/#", False),
        ("edgekit/+/x", False),
        ("", False),
    ],
)
def test_reporter_and_collector_accept_and_refuse_the_same_prefixes(prefix, ok):
    reporter = _outcome(_reporter_side, "mqtt://broker", prefix=prefix)
    collector = _outcome(_collector_side, "mqtt://broker", prefix=prefix)
    assert reporter[0] == collector[0] == ("ok" if ok else "refused")
    if ok:
        assert reporter == collector == ("ok", f"mqtt://broker:1883 {prefix}")
    else:
        assert reporter[1] == f"setting 'prefix' from --prefix: {collector[1]}"


def test_scheme_table():
    assert {name: (s.tls, s.default_port) for name, s in SCHEMES.items()} == {
        "mqtt": (False, 1883),
        "mqtts": (True, 8883),
        "tcp": (False, 1883),
        "ssl": (True, 8883),
    }


def test_address_parts_and_redaction():
    address = BrokerAddress.parse("mqtts://dev%40fleet:p%3Ass@[::1]")
    assert (address.host, address.port, address.tls) == ("::1", 8883, True)
    assert (address.username, address.password) == ("dev@fleet", "p:ss")
    assert str(address) == address.url == "mqtts://dev%40fleet@[::1]:8883"
    assert repr(address) == "BrokerAddress('mqtts://dev%40fleet@[::1]:8883', password='***')"


@pytest.mark.parametrize(
    ("session", "tls", "setting", "message"),
    [
        ({"client_id": "a/b"}, {}, "client_id", "client id 'a/b' must be 1 to 128 characters"),
        ({"client_id": ""}, {}, "client_id", "client id '' must be 1 to 128"),
        ({"client_id": "x" * 129}, {}, "client_id", "must be 1 to 128 characters"),
        ({"prefix": "edgekit/#"}, {}, "prefix", "topic prefix 'edgekit/#'"),
        ({"mqtt_version": "4"}, {}, "mqtt_version", "MQTT version '4' is not 5 or 3.1.1"),
        ({"keepalive_s": 70000}, {}, "keepalive_s", "keepalive 70000"),
        ({"session_expiry_s": -1}, {}, "session_expiry_s", "session expiry -1 s"),
        ({"connect_timeout_s": 0}, {}, "connect_timeout_s", "connect timeout 0 s"),
        ({"reconnect_min_s": 5, "reconnect_max_s": 2}, {}, "reconnect_min_s", "1 <= min <= max"),
        ({}, {"ca_file": "/etc/ca.pem"}, "ca_file", "TLS files given for a plain mqtt://"),
        ({}, {"keyfile": "/etc/key.pem"}, "keyfile", "keyfile without its certfile"),
    ],
)
def test_session_and_tls_options_are_checked_once_naming_the_option(session, tls, setting, message):
    with pytest.raises(MqttConfigError, match=re.escape(message)) as caught:
        BrokerSettings.from_url(
            "mqtt://broker",
            session=SessionOptions(**{"client_id": "edgekit-pi", **session}),
            tls_files=TlsFiles(**tls),
        )
    assert caught.value.setting == setting
    assert isinstance(caught.value, ConfigError)


def test_the_mqtt_version_is_the_vocabulary_s():
    session = SessionOptions(client_id="edgekit-pi", mqtt_version="3.1.1")  # type: ignore[arg-type]
    assert session.mqtt_version is MqttVersion.V311
    assert SessionOptions(client_id="edgekit-pi").mqtt_version is MqttVersion.V5


def test_each_side_keeps_its_own_session_defaults():
    board = _reporter_side("mqtt://broker").session
    collector = _collector_side("mqtt://broker").session
    assert (board.client_id, board.keepalive_s, board.connect_timeout_s) == (
        "edgekit-pi-01",
        60,
        5.0,
    )
    assert (collector.client_id, collector.keepalive_s, collector.connect_timeout_s) == (
        "edgekit-collector",
        30,
        10.0,
    )
    assert board.session_expiry_s == collector.session_expiry_s == 7 * 24 * 3600
