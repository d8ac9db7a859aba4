"""The collector against a real Mosquitto and real SQLite/PostgreSQL: exactly once, rejects,
statuses, acknowledgement only after commit (a database outage), shared subscriptions."""

from __future__ import annotations

import json
import sqlite3
import uuid

import pytest
from fixtures_collector import collector_broker, publish_all, table_rows
from report_factory import BUNDLES, make_report, report_message

from edgekit._net import free_port
from edgekit._wait import wait_until
from edgekit.collector import (
    Collector,
    CollectorSettings,
    EmbeddedBroker,
    Store,
    collector_session,
)
from edgekit.errors import CollectorError
from edgekit.mqtt import BrokerSettings
from edgekit.schema import MAX_REPORT_BYTES
from edgekit.vocab import MqttVersion


def _settings(
    port: int,
    *,
    client_id: str | None = None,
    mqtt_version: MqttVersion = MqttVersion.V5,
    **collector,
) -> CollectorSettings:
    # Short waits: a collector of these tests reconnects within 2 s and gives up after 5.
    session = collector_session(
        client_id or f"collector-{uuid.uuid4().hex[:8]}",
        connect_timeout_s=5.0,
        mqtt_version=mqtt_version,
        reconnect_max_s=2,
    )
    broker = BrokerSettings.from_url(f"mqtt://127.0.0.1:{port}", session=session)
    return CollectorSettings(broker=broker, **collector)


def _stored_ids(url: str) -> list[str]:
    return [row[0] for row in table_rows(url, "SELECT message_id FROM reports")]


def test_every_report_stored_exactly_once_and_republished_ids_ignored(
    collector_mosquitto, store_url
):
    reports = [
        make_report(f"rpi4-{i % 7:02d}", sequence=i, bundle=BUNDLES[i % 3]) for i in range(300)
    ]
    with Store(store_url) as store, Collector(_settings(collector_mosquitto.port), store) as c:
        publish_all(collector_mosquitto.port, [report_message(r) for r in reports])
        # A device whose PUBACK got lost publishes again; the same ids must not be stored twice.
        publish_all(collector_mosquitto.port, [report_message(r) for r in reports[:50]])
        wait_until(lambda: c.stats.received == 350, what="350 messages handled")
        stats = c.stats
    assert (stats.stored, stats.duplicates, stats.rejected) == (300, 50, 0)
    assert stats.acked == 350
    ids = _stored_ids(store_url)
    assert len(ids) == 300
    assert set(ids) == {r.message_id for r in reports}
    rows = table_rows(store_url, "SELECT message_id, device_id, sequence, p99_ms FROM reports")
    published = {r.message_id: (r.device_id, r.sequence, r.latency.p99_ms) for r in reports}
    assert {row[0]: tuple(row[1:]) for row in rows} == published
    assert table_rows(store_url, "SELECT count(*) FROM devices") == [(7,)]
    assert table_rows(store_url, "SELECT count(*) FROM bundles") == [(3,)]


def _malformed_corpus() -> list[tuple[str, bytes, str]]:
    good = json.loads(make_report("rpi4-01").to_json())
    wrong_type = {**good, "threads": "four"}
    unknown_schema = {**good, "schema": "edgekit.report/2"}
    beyond_64_bits = {**good, "message_id": uuid.uuid4().hex, "sequence": 2**70}
    return [
        ("edgekit/v1/rpi4-01/report", b"{this is not json", "Invalid JSON"),
        ("edgekit/v1/rpi4-01/report", json.dumps(wrong_type).encode(), "threads"),
        ("edgekit/v1/rpi4-01/report", b"{" + b" " * MAX_REPORT_BYTES + b"}", "exceeds"),
        ("edgekit/v1/rpi4-99/report", make_report("rpi4-01").to_json(), "does not match"),
        ("edgekit/v1/rpi4-01/report", json.dumps(unknown_schema).encode(), "schema"),
        ("edgekit/v1/rpi4-01/status", b"rebooting", "not 'online' or 'offline'"),
        (
            "edgekit/v1/rpi4-01/report",
            json.dumps(beyond_64_bits).encode(),
            "database refused the report",
        ),
    ]


def test_malformed_messages_are_rejected_and_the_collector_keeps_running(
    collector_mosquitto, store_url
):
    corpus = _malformed_corpus()
    before, after = make_report("rpi4-01", sequence=1), make_report("rpi4-01", sequence=2)
    with Store(store_url) as store, Collector(_settings(collector_mosquitto.port), store) as c:
        publish_all(collector_mosquitto.port, [report_message(before)])
        publish_all(collector_mosquitto.port, [(t, p) for t, p, _ in corpus])
        publish_all(collector_mosquitto.port, [report_message(after)])
        wait_until(lambda: c.stats.received == len(corpus) + 2, what="all messages handled")
        stats = c.stats
    assert (stats.stored, stats.rejected, stats.acked) == (2, len(corpus), len(corpus) + 2)
    assert sorted(_stored_ids(store_url)) == sorted([before.message_id, after.message_id])
    rows = table_rows(store_url, "SELECT topic, reason, payload_bytes FROM rejected ORDER BY id")
    assert len(rows) == len(corpus)
    for (topic, reason, size), (sent_topic, payload, needle) in zip(rows, corpus, strict=True):
        assert topic == sent_topic
        assert needle in reason
        assert size == len(payload)
    # Nothing else changed: no status row for the bad status, no device for the spoofed id.
    assert table_rows(store_url, "SELECT count(*) FROM statuses") == [(0,)]
    assert table_rows(store_url, "SELECT device_id FROM devices") == [("rpi4-01",)]


def test_statuses_retained_and_last_will(collector_mosquitto, store_url):
    import paho.mqtt.client as mqtt

    port = collector_mosquitto.port
    publish_all(port, [("edgekit/v1/rpi4-01/status", b"online")], retain=True)
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rpi4-02")
    device.will_set("edgekit/v1/rpi4-02/status", b"offline", qos=1, retain=True)
    with Store(store_url) as store, Collector(_settings(port), store) as c:
        wait_until(lambda: c.stats.status_changes == 1, what="the retained status")
        device.connect("127.0.0.1", port, keepalive=5)
        device.loop_start()
        device.publish("edgekit/v1/rpi4-02/status", b"online", qos=1, retain=True).wait_for_publish(
            10
        )
        wait_until(lambda: c.stats.status_changes == 2, what="rpi4-02 online")
        # Drop the socket without DISCONNECT: the broker publishes the Last Will.
        device.loop_stop()
        device.socket().close()
        wait_until(lambda: c.stats.status_changes == 3, timeout_s=30, what="the last will")
        snapshot = store.snapshot()
    status = {d.device_id: d.last_status for d in snapshot.devices}
    assert status == {"rpi4-01": "online", "rpi4-02": "offline"}
    rows = table_rows(store_url, "SELECT device_id, status FROM statuses ORDER BY id")
    assert rows == [("rpi4-01", "online"), ("rpi4-02", "online"), ("rpi4-02", "offline")]


def test_database_outage_acknowledges_nothing_and_loses_nothing(collector_mosquitto, tmp_path):
    """While SQLite is locked nothing is acked; stopped mid-outage, the broker redelivers the
    unacknowledged reports to the next session of the same client id, and each is stored once."""
    url = f"sqlite:///{tmp_path / 'outage.db'}"
    port = collector_mosquitto.port
    settings = _settings(port, client_id="collector-outage", store_retry_max_s=0.5)
    first = [make_report("rpi4-01", sequence=i) for i in range(20)]
    second = [make_report("rpi4-01", sequence=100 + i) for i in range(20)]
    with Store(url, timeout_s=0.2) as store:
        with Collector(settings, store) as c:
            # Outage 1, recovered while running: the retry commits, then acknowledges.
            lock = sqlite3.connect(tmp_path / "outage.db", isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
            publish_all(port, [report_message(r) for r in first])
            wait_until(lambda: c.stats.store_failures >= 2, what="failed commits")
            assert c.stats.acked == 0
            lock.execute("ROLLBACK")
            wait_until(lambda: c.stats.acked == 20, what="acks after recovery")
            # Outage 2, and the collector is stopped before the database comes back.
            lock.execute("BEGIN EXCLUSIVE")
            publish_all(port, [report_message(r) for r in second])
            wait_until(lambda: c.stats.store_failures >= 4, what="failed commits")
            unacked = c.stats
        assert unacked.acked == 20
        lock.execute("ROLLBACK")
        lock.close()
        assert store.message_ids() == {r.message_id for r in first}
        with Collector(settings, store) as again:
            wait_until(lambda: again.stats.stored == 20, what="redelivered reports")
            assert again.stats.acked == 20
    assert sorted(_stored_ids(url)) == sorted(r.message_id for r in first + second)


def test_shared_subscription_splits_the_load(collector_mosquitto, store_url):
    reports = [make_report(f"dev-{i % 40:02d}", sequence=i) for i in range(400)]
    port = collector_mosquitto.port
    with (
        Store(store_url) as store_a,
        Store(store_url) as store_b,
        Collector(_settings(port, share_group="g", client_id="collector-a"), store_a) as a,
        Collector(_settings(port, share_group="g", client_id="collector-b"), store_b) as b,
    ):
        publish_all(port, [report_message(r) for r in reports])
        wait_until(lambda: a.stats.received + b.stats.received >= 400, what="400 messages")
        stats_a, stats_b = a.stats, b.stats
    assert stats_a.stored > 0
    assert stats_b.stored > 0
    assert stats_a.stored + stats_b.stored == 400
    assert stats_a.duplicates + stats_b.duplicates == 0
    ids = _stored_ids(store_url)
    assert len(ids) == 400
    assert set(ids) == {r.message_id for r in reports}


def test_embedded_broker_zero_set_up(tmp_path):
    port = free_port()
    url = f"sqlite:///{tmp_path / 'edgekit.db'}"
    reports = [make_report("rpi4-01", sequence=i) for i in range(30)]
    with (
        EmbeddedBroker(port) as broker,
        Store(url) as store,
        Collector(_settings(port, mqtt_version=MqttVersion.V311), store) as c,
    ):
        assert broker.url == f"mqtt://127.0.0.1:{port}"
        import paho.mqtt.client as mqtt

        device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        device.connect("127.0.0.1", port)
        device.loop_start()
        for r in reports:
            device.publish(*report_message(r), qos=1).wait_for_publish(10)
        device.disconnect()
        device.loop_stop()
        wait_until(lambda: c.stats.stored == 30, what="30 reports via the embedded broker")
    assert len(_stored_ids(url)) == 30


def test_unreachable_broker_fails_fast_with_collector_error(tmp_path):
    with (
        Store(f"sqlite:///{tmp_path / 'x.db'}") as store,
        pytest.raises(CollectorError, match="cannot connect to MQTT broker"),
    ):
        Collector(_settings(free_port()), store).start()


def test_collector_reconnects_after_a_broker_restart(tmp_path):
    """The broker goes away and comes back on the same port; the collector carries on."""
    url = f"sqlite:///{tmp_path / 'edgekit.db'}"
    with collector_broker(tmp_path / "b1") as broker:
        settings = _settings(broker.port)
        with Store(url) as store, Collector(settings, store) as c:
            publish_all(broker.port, [report_message(make_report("rpi4-01", sequence=0))])
            wait_until(lambda: c.stats.stored == 1, what="first report")
            broker.stop()
            broker.start()
            wait_until(lambda: c.stats.connections == 2, timeout_s=30, what="reconnection")
            publish_all(broker.port, [report_message(make_report("rpi4-01", sequence=1))])
            wait_until(lambda: c.stats.stored == 2, what="report after reconnecting")
