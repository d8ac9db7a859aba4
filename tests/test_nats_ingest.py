"""The NATS collector against a real three-node JetStream cluster with MQTT (nats-server 2.10+).

One cluster serves the module; each test has its own topic prefix, stream and durable, so they
do not see each other's messages. Publishers are plain paho clients over MQTT 3.1.1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_collector import table_rows
from nats_cluster import NatsCluster
from nats_testing import (
    ConsumerThread,
    close,
    consumer_info,
    jetstream,
    mqtt_client,
    pg_database,
    publish,
    settings_for,
)
from report_factory import make_report, report_message

from edgekit._wait import wait_until
from edgekit.collector import Store
from edgekit.collector.nats_consumer import NatsConsumer
from edgekit.collector.nats_settings import StreamLayout
from edgekit.collector.nats_stream import MQTT_STREAM
from edgekit.errors import CollectorError


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path_factory.mktemp("nats")) as running:
        yield running


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_database() as url:
        yield url


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fleet.db'}"


def _prepare(settings, tmp_path: Path) -> None:
    """Create or check the layout the way a collector starting up does."""
    with Store(_sqlite(tmp_path)) as store:
        NatsConsumer(settings, store).prepare()


def test_the_layout_is_created_then_checked(cluster, tmp_path):
    settings = settings_for(cluster.urls, prefix="layout/v1", stream="LAYOUT", durable="c")
    with ConsumerThread(settings, _sqlite(tmp_path)):
        pass

    async def look(js):
        return (
            await js.stream_info(MQTT_STREAM),
            await js.stream_info("LAYOUT"),
            await js.consumer_info("LAYOUT", "c"),
        )

    mqtt_msgs, stream, consumer = jetstream(cluster.urls, look)
    assert (mqtt_msgs.config.retention, mqtt_msgs.config.num_replicas) == ("limits", 3)
    assert not stream.config.subjects
    assert [s.name for s in stream.config.sources] == [MQTT_STREAM]
    assert (stream.config.num_replicas, len(stream.cluster.replicas)) == (3, 2)
    assert (consumer.config.ack_policy, consumer.config.ack_wait) == ("explicit", 30.0)
    # A second collector with other limits brings the consumer to them; the stream stays.
    changed = settings_for(
        cluster.urls, prefix="layout/v1", stream="LAYOUT", durable="c", ack_wait_s=7
    )
    _prepare(changed, tmp_path)
    _, again, consumer = jetstream(cluster.urls, look)
    assert again.created == stream.created
    assert consumer.config.ack_wait == 7.0


def test_reports_statuses_and_a_malformed_payload(cluster, pg_url):
    settings = settings_for(
        cluster.urls, prefix="ingest/v1", stream="INGEST", durable="c", ack_wait_s=1
    )
    reports = [make_report("rpi4.01", sequence=i) for i in range(150)]
    with ConsumerThread(settings, pg_url) as running:
        client = mqtt_client(cluster.nodes[1].mqtt)
        messages = [report_message(r, prefix="ingest/v1") for r in reports]
        messages += [("ingest/v1/rpi4.01/status", b"online"), ("ingest/v1/rpi4.01/report", b"{")]
        assert publish(client, messages) == len(messages)
        close(client)
        wait_until(lambda: running.consumer.stats.received == 152, what="152 messages handled")
        time.sleep(2.5)  # past ack_wait twice: anything unacknowledged would come back
        stats = running.consumer.stats
    stored = table_rows(pg_url, "SELECT device_id, count(*) FROM reports GROUP BY device_id")
    assert stored == [("rpi4.01", 150)], "a '.' in a device id is '//' in the subject"
    assert table_rows(pg_url, "SELECT status FROM statuses") == [("online",)]
    rejected = table_rows(pg_url, "SELECT topic, payload FROM rejected")
    assert rejected == [("ingest/v1/rpi4.01/report", b"{")], "rejected once"
    info = consumer_info(cluster.urls, settings.layout)
    assert (info.num_ack_pending, info.num_redelivered, info.num_pending) == (0, 0, 0)
    assert (stats.acked, stats.duplicates) == (152, 0)


def test_a_slow_commit_keeps_its_messages(cluster, pg_url):
    """While a commit waits (here on a table lock), the messages stay in progress: no other
    collector gets them, although ack_wait passes several times."""
    import psycopg

    settings = settings_for(
        cluster.urls, prefix="slow/v1", stream="SLOW", durable="c", ack_wait_s=2
    )
    reports = [make_report("board-1", sequence=i) for i in range(40)]
    with ConsumerThread(settings, pg_url) as first, ConsumerThread(settings, pg_url) as second:
        dsn = pg_url.replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(dsn) as lock:
            lock.execute("LOCK TABLE reports IN EXCLUSIVE MODE")
            client = mqtt_client(cluster.nodes[0].mqtt)
            assert publish(client, [report_message(r, prefix="slow/v1") for r in reports]) == 40
            close(client)
            time.sleep(6)  # three ack_waits while the commit waits for the lock
        wait_until(lambda: len(first.store.message_ids()) == 40, what="40 reports stored")
        received = first.consumer.stats.received + second.consumer.stats.received
    info = consumer_info(cluster.urls, settings.layout)
    assert (info.num_redelivered, info.num_ack_pending, received) == (0, 0, 40)


def test_a_message_no_collector_gets_past_is_rejected_not_redelivered_forever(cluster, tmp_path):
    settings = settings_for(
        cluster.urls, prefix="poison/v1", stream="POISON", durable="c", ack_wait_s=1, poison_after=4
    )
    _prepare(settings, tmp_path)
    poison = make_report("board-1", sequence=0)
    client = mqtt_client(cluster.nodes[2].mqtt)
    assert publish(client, [report_message(poison, prefix="poison/v1")]) == 1
    close(client)

    async def take_without_acking(js):
        # Three collectors that fetched it and died before committing.
        sub = await js.pull_subscribe_bind("c", stream="POISON")
        for _ in range(3):
            (msg,) = await sub.fetch(1, timeout=5)
            await asyncio.sleep(1.3)
        return msg.metadata.num_delivered

    assert jetstream(cluster.urls, take_without_acking) == 3
    with ConsumerThread(settings, _sqlite(tmp_path)) as running:
        wait_until(lambda: running.consumer.stats.rejected == 1, what="the rejection")
    rows = table_rows(_sqlite(tmp_path), "SELECT reason, payload FROM rejected")
    assert len(rows) == 1
    assert rows[0][0].startswith("delivered 4 times without being stored")
    assert poison.to_json().startswith(rows[0][1]), "kept verbatim"
    assert table_rows(_sqlite(tmp_path), "SELECT count(*) FROM reports") == [(0,)]
    time.sleep(1.5)
    info = consumer_info(cluster.urls, settings.layout)
    assert (info.num_ack_pending, info.num_pending) == (0, 0), "terminated, not redelivered"


def test_a_server_made_interest_mqtt_stream_is_converted(tmp_path):
    """A board that connects before any collector makes the server create $MQTT_msgs with
    interest retention; the first collector turns it into limits retention."""
    with NatsCluster(tmp_path / "nats") as fresh:
        client = mqtt_client(fresh.nodes[0].mqtt)  # the server creates its $MQTT_ streams
        close(client)

        async def retention(js):
            return (await js.stream_info(MQTT_STREAM)).config.retention

        assert jetstream(fresh.urls, retention) == "interest"
        settings = settings_for(fresh.urls)
        _prepare(settings, tmp_path)
        assert jetstream(fresh.urls, retention) == "limits"


def test_a_stream_capturing_subjects_directly_is_refused(cluster, tmp_path):
    from nats.js.api import StreamConfig

    jetstream(
        cluster.urls,
        lambda js: js.add_stream(StreamConfig(name="DIRECT", subjects=["direct.v1.*.report"])),
    )
    settings = settings_for(cluster.urls, prefix="direct/v1", stream="DIRECT")
    with pytest.raises(CollectorError, match=r"captures subjects .* directly"):
        _prepare(settings, tmp_path)


def test_layout_defaults_match_the_shipped_permissions():
    text = (Path(__file__).parents[1] / "edgekit/collector/nats/edgekit-accounts.conf").read_text()
    layout = StreamLayout()
    for subject in (
        f"$JS.API.CONSUMER.MSG.NEXT.{layout.stream}.{layout.durable}",
        f"$JS.API.CONSUMER.CREATE.{layout.stream}.{layout.durable}",
        f"$JS.ACK.{layout.stream}.{layout.durable}.>",
        f"$JS.API.STREAM.CREATE.{MQTT_STREAM}",
    ):
        assert f'"{subject}"' in text
