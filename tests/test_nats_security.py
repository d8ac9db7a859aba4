"""The shipped NATS configuration (edgekit-cluster.conf, edgekit-accounts.conf) on three nodes:
TLS on every port, bcrypt passwords, a board publishing only under its own id, a collector that
sets up and consumes its stream and publishes nothing. Only ports, paths and secrets differ."""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from edgekit_testing import EDGEKIT
from fixtures_collector import table_rows
from nats_cluster import HOST, NatsCluster, make_node_pki, shipped_config
from nats_testing import close, mqtt_client, publish
from report_factory import make_report, report_message

from edgekit._wait import wait_until

PASSWORDS = {"collector": "pw-collector", "rpi4-01": "pw-rpi4-01", "rpi4-02": "pw-rpi4-02",
             "rollout": "pw-rollout", "sys": "pw-sys"}  # fmt: skip


class Secure:
    """The shipped cluster and one ``edgekit collect --nats`` as user 'collector'."""

    def __init__(self, folder: Path) -> None:
        self.pki = make_node_pki(folder / "pki")
        self.cluster = NatsCluster(folder, config=shipped_config(self.pki, PASSWORDS)).start_all()
        self.db = f"sqlite:///{folder / 'fleet.db'}"
        self.lines: list[str] = []
        self.collector = subprocess.Popen(
            [EDGEKIT, "collect", "--nats", self.urls("collector"), "--ca-file", str(self.pki.ca),
             "--db", self.db],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        stderr = self.collector.stderr
        threading.Thread(target=lambda: self.lines.extend(stderr or ()), daemon=True).start()
        wait_until(lambda: any("collecting" in x for x in self.lines) or self.collector.poll(),
                   timeout_s=60, what="the collector")  # fmt: skip
        assert self.collector.poll() is None, "".join(self.lines)

    def urls(self, user: str, *, scheme: str = "tls") -> str:
        password = PASSWORDS[user]
        return ",".join(
            f"{scheme}://{user}:{password}@{HOST}:{n.client}" for n in self.cluster.nodes
        )

    def board(self, user: str, *, password: str | None = None, node: int = 0):
        return mqtt_client(
            self.cluster.nodes[node].mqtt, client_id=f"edgekit-{user}", username=user,
            password=password or PASSWORDS[user], ca_file=self.pki.ca,
        )  # fmt: skip

    def stored_ids(self) -> set[str]:
        return {row[0] for row in table_rows(self.db, "SELECT message_id FROM reports")}

    def close(self) -> None:
        self.collector.kill()
        self.collector.wait(10)
        self.cluster.kill_all()


@pytest.fixture(scope="module")
def secure(tmp_path_factory) -> Iterator[Secure]:
    running = Secure(tmp_path_factory.mktemp("secure-nats"))
    yield running
    running.close()


def test_a_board_reports_over_tls_with_its_password(secure, jetson_build, tmp_path):
    result = subprocess.run(
        [EDGEKIT, "daemon", str(jetson_build[1]), "--mqtt", "3.1.1",
         "--broker", f"mqtts://rpi4-01:{PASSWORDS['rpi4-01']}@{HOST}:{secure.cluster.nodes[1].mqtt}",
         "--ca-file", str(secure.pki.ca), "--device-id", "rpi4-01", "--reports", "2",
         "--interval", "0.2", "--window", "10", "--outbox", str(tmp_path / "outbox")],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

    def stored() -> list[tuple]:
        return table_rows(secure.db, "SELECT device_id FROM reports WHERE device_id = 'rpi4-01'")

    wait_until(lambda: len(stored()) == 2, timeout_s=30, what="2 reports stored")

    def statuses() -> list[str]:
        rows = table_rows(secure.db, "SELECT status FROM statuses WHERE device_id = 'rpi4-01'")
        return [status for (status,) in rows]

    wait_until(lambda: statuses()[-2:] == ["online", "offline"], timeout_s=30,
               what="online, then offline")  # fmt: skip


def test_a_board_cannot_publish_under_another_boards_id(secure):
    spoof = make_report("rpi4-02", sequence=7)  # valid in every way but who sends it
    claimed = make_report("rpi4-02", sequence=8)
    marker = make_report("rpi4-01", sequence=9)
    board = secure.board("rpi4-01", node=2)
    # NATS acknowledges the spoof like any publish (Mosquitto would too for MQTT 3.1.1) and
    # drops it: the board cannot tell. It is not stored.
    acked = publish(board, [report_message(spoof)])
    topic, payload = report_message(claimed)
    acked += publish(
        board, [(topic.replace("rpi4-02", "rpi4-01"), payload), report_message(marker)]
    )
    close(board)
    assert acked == 3
    wait_until(lambda: marker.message_id in secure.stored_ids(), timeout_s=30, what="the marker")
    assert spoof.message_id not in secure.stored_ids()
    assert claimed.message_id not in secure.stored_ids()
    devices = {d for (d,) in table_rows(secure.db, "SELECT device_id FROM devices")}
    assert "rpi4-02" not in devices
    # The payload claiming rpi4-02 on rpi4-01's own topic: refused by the collector, as with
    # Mosquitto.
    reasons = table_rows(secure.db, "SELECT reason FROM rejected")
    assert any("does not match topic device id 'rpi4-01'" in r for (r,) in reasons), reasons
    log = "".join(secure.cluster.log(i) for i in range(3))
    assert re.search(r"Publish Violation .*edgekit\.v1\.rpi4-02\.report", log)


def test_the_collector_user_only_consumes(secure):
    import nats
    from nats.js.api import StreamConfig

    errors: list[str] = []
    forged = make_report("rpi4-01", sequence=99)

    async def attempt() -> dict[str, str]:
        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await nats.connect(
            secure.urls("collector").split(","), tls=_tls(secure.pki.ca), error_cb=on_error
        )
        js = nc.jetstream(timeout=2)
        outcome = {}
        for subject in ("edgekit.v1.rpi4-01.report", "$MQTT.msgs.edgekit.v1.rpi4-01.report"):
            await nc.publish(subject, forged.to_json())
        await nc.flush()
        for name, call in (
            ("delete", js.delete_stream("EDGEKIT")),
            ("create", js.add_stream(StreamConfig(name="OTHER", subjects=["other.>"]))),
            ("purge", js.purge_stream("EDGEKIT")),
        ):
            try:
                await call
                outcome[name] = "allowed"
            except Exception as exc:
                outcome[name] = type(exc).__name__
        await asyncio.sleep(0.5)
        await nc.close()
        return outcome

    outcome = asyncio.run(attempt())
    assert "allowed" not in outcome.values(), outcome
    assert sum("permissions violation for publish" in e for e in errors) >= 5, errors
    marker = make_report("rpi4-01", sequence=100)
    board = secure.board("rpi4-01")
    assert publish(board, [report_message(marker)]) == 1
    close(board)
    wait_until(lambda: marker.message_id in secure.stored_ids(), timeout_s=30, what="the marker")
    assert forged.message_id not in secure.stored_ids()


def test_plaintext_and_wrong_passwords_are_refused(secure):
    import nats

    async def plaintext() -> str:
        try:
            nc = await nats.connect(secure.urls("collector", scheme="nats").split(",")[0],
                                    allow_reconnect=False, connect_timeout=3)  # fmt: skip
        except Exception as exc:
            return type(exc).__name__
        await nc.close()
        return "connected"

    assert asyncio.run(plaintext()) != "connected"
    with pytest.raises(PermissionError, match="Not authorized"):
        secure.board("rpi4-01", password="wrong")
    with pytest.raises(TimeoutError):  # no TLS on the TLS-only MQTT listener
        mqtt_client(secure.cluster.nodes[0].mqtt, timeout_s=3,
                    username="rpi4-01", password=PASSWORDS["rpi4-01"])  # fmt: skip


def test_a_board_reads_only_its_own_deploy_topic(secure):
    rollout = secure.board("rollout")
    desired = [(f"edgekit/v1/{board}/deploy", f"desired-{board}".encode())
               for board in ("rpi4-02", "rpi4-01")]  # fmt: skip
    assert publish(rollout, desired, retain=True) == 2
    close(rollout)
    board = secure.board("rpi4-02", node=1)
    got: list[bytes] = []
    granted: list[bool] = []
    subscribed = threading.Event()
    board.on_message = lambda _c, _u, message: got.append(message.payload)
    board.on_subscribe = lambda _c, _u, _m, codes, _p: (
        granted.extend(not c.is_failure for c in codes),
        subscribed.set(),
    )
    board.subscribe([("edgekit/v1/rpi4-02/deploy", 1), ("edgekit/v1/rpi4-01/deploy", 1),
                     ("edgekit/v1/+/report", 1)])  # fmt: skip
    assert subscribed.wait(10)
    assert granted == [True, False, False]
    wait_until(lambda: got == [b"desired-rpi4-02"], timeout_s=10, what="its retained state")
    # Only the rollout user writes deploy topics: the board's own write is dropped.
    assert publish(board, [("edgekit/v1/rpi4-02/deploy", b"forged")], retain=True) == 1
    with pytest.raises(TimeoutError):
        wait_until(lambda: len(got) > 1, timeout_s=2, what="another deploy message")
    close(board)
    assert got == [b"desired-rpi4-02"]


def test_the_mqtt_streams_are_replicated_and_kept(secure):
    report = secure.cluster.monitor(0, "jsz?accounts=true&streams=true&config=true")
    streams = {
        s["name"]: s["config"]
        for account in report["account_details"]
        for s in account.get("stream_detail", [])
    }
    assert streams["$MQTT_msgs"]["retention"] == "limits"
    for name in ("$MQTT_msgs", "$MQTT_sess", "$MQTT_rmsgs", "EDGEKIT"):
        assert streams[name]["num_replicas"] == 3, name


def _tls(ca: Path):
    import ssl

    return ssl.create_default_context(cafile=str(ca))
