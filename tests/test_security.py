"""The documented Mosquitto set-up (TLS, passwords, ACL) with edgekit's daemon and collector."""

from __future__ import annotations

import subprocess
import threading
from importlib import resources
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from edgekit_testing import EDGEKIT, assert_one_clear_error, assert_one_error_line, run_edgekit
from mosquitto_launcher import HOST, MosquittoBroker, make_ca, make_pki, run_as_me
from paho.mqtt.enums import CallbackAPIVersion
from report_factory import sample_report

from edgekit._net import free_port
from edgekit._wait import wait_until
from edgekit.collector import Collector, Store, collector_settings
from edgekit.mqtt import TlsFiles

USERS = {"rpi4-01": "pw-rpi4", "rpi4-02": "pw-other", "collector": "pw-collector"}


def _shipped_config(folder: Path, port: int, pki) -> str:
    """edgekit's shipped edgekit.conf and edgekit.acl, with paths and port adapted."""
    shipped = resources.files("edgekit.collector").joinpath("mosquitto")
    passwd, acl = folder / "edgekit.passwd", folder / "edgekit.acl"
    for user, password in USERS.items():
        flags = ["-b", "-c"] if not passwd.exists() else ["-b"]
        subprocess.run(["mosquitto_passwd", *flags, str(passwd), user, password], check=True)
    acl.write_text(shipped.joinpath("edgekit.acl").read_text())
    conf = shipped.joinpath("edgekit.conf").read_text()
    for old, new in (
        ("/etc/mosquitto/edgekit.passwd", str(passwd)),
        ("/etc/mosquitto/edgekit.acl", str(acl)),
        ("/etc/mosquitto/certs/ca.crt", str(pki.ca)),
        ("/etc/mosquitto/certs/broker.crt", str(pki.server_cert)),
        ("/etc/mosquitto/certs/broker.key", str(pki.server_key)),
        ("listener 8883", f"listener {port} {HOST}"),
        ("persistence true", f"persistence true\npersistence_location {folder}/"),
        ("per_listener_settings false", f"per_listener_settings false\n{run_as_me()}"),
    ):
        assert old in conf
        conf = conf.replace(old, new)
    return conf


class SecureBroker:
    """Mosquitto running edgekit's shipped edgekit.conf/edgekit.acl."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        port = free_port()
        self.tls = make_pki(folder / "pki")
        config = _shipped_config(folder, port, self.tls)
        self.broker = MosquittoBroker(folder, port=port, config=config).start()
        self.port = port

    def url(self, user: str, password: str | None = None) -> str:
        return f"mqtts://{user}:{password or USERS[user]}@{HOST}:{self.port}"

    def close(self) -> None:
        self.broker.kill()


@pytest.fixture
def broker(tmp_path):
    secure = SecureBroker(tmp_path / "broker")
    yield secure
    secure.close()


@pytest.fixture
def collector(broker, tmp_path):
    """edgekit's collector as the read-only 'collector' user, storing into SQLite."""
    store = Store(f"sqlite:///{tmp_path / 'fleet.db'}")
    settings = collector_settings(
        broker.url("collector"),
        client_id="edgekit-collector-test",
        tls_files=TlsFiles(ca_file=broker.tls.ca),
    )
    stop = threading.Event()
    with Collector(settings, store) as running:
        thread = threading.Thread(target=running.run, kwargs={"stop": stop}, daemon=True)
        thread.start()
        yield store
        stop.set()
        thread.join(10)
    store.close()


def test_device_reports_over_tls_with_its_password(broker, collector, jetson_build, tmp_path):
    _, bundle = jetson_build
    result = subprocess.run(
        [EDGEKIT, "daemon", str(bundle), "--broker", broker.url("rpi4-01"), "--ca-file",
         str(broker.tls.ca), "--device-id", "rpi4-01", "--reports", "2", "--interval", "0.2",
         "--window", "10", "--outbox", str(tmp_path / "outbox")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    wait_until(lambda: len(collector.message_ids()) == 2, timeout_s=15, what="2 reports stored")
    assert {r.device_id for r in collector.snapshot().devices} == {"rpi4-01"}


def _publish_as(broker, user: str, topic: str, payload: bytes) -> int:
    """Publish once with QoS 1 over MQTT 5; the PUBACK's reason code."""
    outcome: dict[str, int] = {}
    done = threading.Event()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"t-{user}",
                         protocol=mqtt.MQTTv5)  # fmt: skip
    client.username_pw_set(user, USERS[user])
    client.tls_set(ca_certs=str(broker.tls.ca))

    def on_publish(_c, _u, _mid, reason_code, _p):
        outcome["rc"] = reason_code.value
        done.set()

    client.on_publish = on_publish
    client.connect(HOST, broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1)
    assert done.wait(10)
    client.disconnect()
    client.loop_stop()
    return outcome["rc"]


def test_a_device_cannot_publish_under_another_device(broker, collector):
    spoofed = sample_report(device_id="rpi4-02").to_json()
    rc = _publish_as(broker, "rpi4-01", "edgekit/v1/rpi4-02/report", spoofed)
    assert rc == 0x87  # PUBACK: not authorized; the broker drops it
    # own topic, someone else's id inside: the broker lets it through, the collector rejects it
    assert _publish_as(broker, "rpi4-01", "edgekit/v1/rpi4-01/report", spoofed) == 0
    wait_until(lambda: collector.snapshot().rejected_count == 1, timeout_s=15, what="1 rejection")
    snapshot = collector.snapshot()
    assert "device" in snapshot.recent_rejected[0].reason
    assert collector.message_ids() == set()


def test_the_collector_may_only_read(broker):
    rc = _publish_as(broker, "collector", "edgekit/v1/rpi4-01/report", sample_report().to_json())
    assert rc == 0x87


def test_wrong_password_is_a_clear_error(broker, jetson_build, tmp_path):
    _, bundle = jetson_build
    result = run_edgekit(
        "daemon", bundle, "--broker", broker.url("rpi4-01", "wrong"), "--ca-file", broker.tls.ca,
        "--device-id", "rpi4-01", "--reports", "1", "--outbox", tmp_path / "outbox",
    )  # fmt: skip
    assert_one_error_line(result, "bad username or password")
    result = run_edgekit(
        "collect", "--broker", broker.url("collector", "wrong"), "--ca-file", broker.tls.ca,
        "--db", f"sqlite:///{tmp_path / 'c.db'}", "--duration", "1",
    )  # fmt: skip
    assert_one_clear_error(result, "refused the connection")


def test_untrusted_certificate_is_a_clear_error(broker, jetson_build, tmp_path):
    _, bundle = jetson_build
    stranger, _ = make_ca(tmp_path / "other-ca", "stranger-ca")
    result = run_edgekit(
        "collect", "--broker", broker.url("collector"), "--ca-file", stranger,
        "--db", f"sqlite:///{tmp_path / 'c.db'}", "--duration", "1",
    )  # fmt: skip
    assert_one_clear_error(result, "certificate verify failed")
    # the daemon keeps measuring and buffering (a board's clock may be wrong until NTP syncs)
    # and says why it cannot connect
    daemon = run_edgekit(
        "daemon", bundle, "--broker", broker.url("rpi4-01"), "--ca-file", stranger,
        "--device-id", "rpi4-01", "--reports", "1", "--window", "5", "--outbox",
        tmp_path / "outbox", "--flush-timeout", "1",
    )  # fmt: skip
    assert daemon.returncode == 0, daemon.stderr
    assert "certificate verify failed" in daemon.stderr
    assert "1 report(s) stay in the outbox" in daemon.stderr
