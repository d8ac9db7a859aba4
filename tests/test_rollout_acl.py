"""A rollout under the shipped Mosquitto configuration (edgekit.conf and edgekit.acl: TLS only, a
password per board, the collector and the rollout controller), with the bundle store on HTTPS.

The rollout goes through; and under that ACL a board can neither publish another board's
deployment events, nor write any deploy topic (its own included), nor read another board's
deploy topic; the collector cannot write one either; the controller writes only deploy topics.
"""

from __future__ import annotations

import queue
import subprocess
import threading
from importlib import resources
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from deploy_fleet import (
    TEST_GATE,
    Board,
    boards_running,
    cached_test_bundles,
    collector_running,
    deploy,
    reports_by,
    wait_for_reports,
)
from mosquitto_launcher import HOST, MosquittoBroker, make_pki, run_as_me

from edgekit._net import free_port
from edgekit.bundle_server import BundleServer
from edgekit.bundle_store import manifest_digest
from edgekit.deploy_wire import deploy_topic, deployment_topic
from edgekit.mqtt import TlsFiles

BOARDS = ["pi-acl-01", "pi-acl-02", "pi-acl-03"]
USERS = {**{b: f"pw-{b}" for b in BOARDS}, "collector": "pw-collector", "rollout": "pw-rollout"}
NOT_AUTHORIZED = 0x87


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


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    folder = tmp_path_factory.mktemp("secure")
    pki = make_pki(folder / "pki")
    port = free_port()
    broker = MosquittoBroker(
        folder / "broker", port=port, config=_shipped_config(folder, port, pki)
    ).start()
    yield broker, pki
    broker.kill()


def _url(broker: MosquittoBroker, user: str) -> str:
    return f"mqtts://{user}:{USERS[user]}@{HOST}:{broker.port}"


def _client(user: str, pki) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{free_port()}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(user, USERS[user])
    client.tls_set(ca_certs=str(pki.ca))
    return client


def _publish_as(secure, user: str, topic: str, payload: bytes = b"{}") -> int:
    """Publish once as ``user`` (QoS 1, retained, MQTT 5); the PUBACK's reason code (below 0x80
    when accepted: 0x10 says nobody is subscribed)."""
    broker, pki = secure
    done: queue.Queue[int] = queue.Queue()
    client = _client(user, pki)
    client.on_publish = lambda _c, _u, _m, reason, _p: done.put(reason.value)
    client.connect(HOST, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=True)
        return done.get(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def _read_as(secure, user: str, topics: list[str], *, wait_s: float = 2.0) -> list[str]:
    """Subscribe as ``user`` and return the topics of what arrives within ``wait_s``."""
    broker, pki = secure
    got: list[str] = []
    subscribed = threading.Event()
    client = _client(user, pki)
    client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, message: got.append(message.topic)
    client.connect(HOST, broker.port)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        threading.Event().wait(wait_s)
    finally:
        client.disconnect()
        client.loop_stop()
    return got


def test_a_rollout_under_the_shipped_tls_and_acl(secure, request, tmp_path):
    broker, pki = secure
    bundles = cached_test_bundles(request.config.cache.mkdir("edgekit-deploy"))
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    (tmp_path / "store").mkdir()
    tls = ("--ca-file", str(pki.ca))
    https = BundleServer(tmp_path / "store", certfile=pki.server_cert, keyfile=pki.server_key)
    boards = [
        Board(
            b,
            tmp_path / b,
            bundles.a,
            _url(broker, b),
            bundles.fleet_pub,
            extra=(*tls, "--store-ca-file", str(pki.ca)),
        )
        for b in BOARDS
    ]
    with (
        https,
        collector_running(_url(broker, "collector"), db, tls_files=TlsFiles(ca_file=pki.ca)),
        boards_running(boards),
    ):
        wait_for_reports(db, boards, manifest_digest(bundles.a), at_least=5, timeout_s=90)
        assert https.url.startswith("https://")
        result = deploy(
            bundles.b,
            "--devices",
            "pi-acl-*",
            "--canary",
            "34%",
            "--waves",
            "100%",
            "--gate",
            TEST_GATE,
            "--db",
            db,
            "--broker",
            _url(broker, "rollout"),
            *tls,
            "--store",
            tmp_path / "store",
            "--store-url",
            https.url,
            "--store-ca-file",
            pki.ca,
        )
        assert result.returncode == 0, result.stderr
        new = manifest_digest(bundles.b)
        assert {b.running_digest() for b in boards} == {new}
        wait_for_reports(db, boards, new, at_least=1, timeout_s=30)
        assert all(reports_by(db, b, new) >= 1 for b in BOARDS)
        # The controller's user writes deploy topics only.
        assert _publish_as(secure, "rollout", deployment_topic("pi-acl-01")) == NOT_AUTHORIZED


def test_a_board_cannot_speak_for_or_read_another_board(secure):
    # Another board's deployment events: refused by the broker (the controller would also
    # refuse a payload naming another board than its topic).
    assert _publish_as(secure, "pi-acl-01", deployment_topic("pi-acl-02")) == NOT_AUTHORIZED
    assert _publish_as(secure, "pi-acl-01", deployment_topic("pi-acl-01")) < 0x80  # accepted
    # No board writes a desired state, not even its own; nor does the collector.
    for user, device in (
        ("pi-acl-01", "pi-acl-02"),
        ("pi-acl-01", "pi-acl-01"),
        ("collector", "pi-acl-01"),
    ):
        assert _publish_as(secure, user, deploy_topic(device)) == NOT_AUTHORIZED, (user, device)
    # Desired states are retained for every board; a board reads its own only, whatever it asks.
    for device in ("pi-acl-01", "pi-acl-02"):
        assert _publish_as(secure, "rollout", deploy_topic(device), b'{"test": 1}') < 0x80
    got = _read_as(secure, "pi-acl-01", [deploy_topic("pi-acl-02"), "edgekit/v1/+/deploy"])
    assert got == [deploy_topic("pi-acl-01")]
    assert _read_as(secure, "pi-acl-02", [deploy_topic("pi-acl-01")]) == []
