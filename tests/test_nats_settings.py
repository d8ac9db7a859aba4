"""The NATS path's pure parts (subjects, URLs, layout, delivery plan) and its CLI errors."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest
from edgekit_testing import assert_one_clear_error, run_edgekit
from hypothesis import given
from hypothesis import strategies as st

from edgekit._net import free_port
from edgekit.collector.nats_delivery import DeliveryPlan
from edgekit.collector.nats_settings import (
    NatsCollectorSettings,
    NatsServer,
    StreamLayout,
    parse_servers,
)
from edgekit.collector.nats_stream import consumer_config, stream_config
from edgekit.collector.nats_subjects import subject_to_topic, topic_to_subject
from edgekit.errors import ConfigError


@pytest.mark.parametrize(
    ("topic", "subject"),
    [
        ("edgekit/v1/rpi4-01/report", "edgekit.v1.rpi4-01.report"),
        # Observed on nats-server 2.15.1: a '.' in a level is '//' in the subject.
        ("edgekit/v1/rpi4.01/report", "edgekit.v1.rpi4//01.report"),
        ("edgekit/v1/a:b/status", "edgekit.v1.a:b.status"),
        ("/a", "/.a"),
        ("a//b", "a./.b"),
        ("a/", "a./"),
    ],
)
def test_topics_map_to_subjects_as_nats_server_does(topic, subject):
    assert topic_to_subject(topic) == subject
    assert subject_to_topic(subject) == topic


@given(st.text(alphabet="ab./-:_9", min_size=1, max_size=30))
def test_every_topic_comes_back_from_its_subject(topic):
    assert subject_to_topic(topic_to_subject(topic)) == topic


@pytest.mark.parametrize("topic", ["edge kit/v1", "edgekit/+/report", "a/#"])
def test_topics_nats_cannot_carry_are_refused(topic):
    with pytest.raises(ConfigError):
        topic_to_subject(topic)


def test_server_urls_parse_and_never_show_the_password():
    servers = parse_servers("nats://collector:s3cret@h1, tls://h2:4333,nats://h3")
    assert [(s.host, s.port, s.tls) for s in servers] == [
        ("h1", 4222, False),
        ("h2", 4333, True),
        ("h3", 4222, False),
    ]
    assert servers[0].connect_url == "nats://collector:s3cret@h1:4222"
    assert "s3cret" not in servers[0].url + repr(servers[0])
    settings = NatsCollectorSettings(servers=servers)
    assert settings.tls
    assert "s3cret" not in settings.where


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("mqtt://h1:1883", "must start with nats:// or tls://, not mqtt://"),
        ("h1:4222", "must start with nats:// or tls://"),
        ("nats://h1:99999", "malformed"),
        ("nats://:pw@h1", "password without a user name"),
        ("nats://h1/path", "must be nats://"),
        (" , ", "no server URL"),
    ],
)
def test_bad_server_urls(url, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_servers(url)


def test_a_bad_url_does_not_show_its_password():
    with pytest.raises(ConfigError) as caught:
        NatsServer.parse("mqtt://u:hunter2@h1")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"stream": "a.b"}, "setting 'stream'"),
        ({"durable": "x y"}, "setting 'durable'"),
        ({"replicas": 6}, "replicas"),
        ({"poison_after": 20, "max_deliver": 20}, "poison_after"),
        ({"prefix": "edgekit/v1/"}, "prefix"),
        ({"prefix": "edge kit"}, "whitespace"),
        ({"ack_wait_s": 0.5}, "ack_wait"),
    ],
)
def test_bad_layouts(change, needle):
    with pytest.raises(ConfigError, match=needle):
        StreamLayout(**change)


def test_a_batch_larger_than_max_ack_pending_is_refused():
    with pytest.raises(ConfigError, match="max_ack_pending"):
        NatsCollectorSettings(
            servers=parse_servers("nats://h1"), layout=StreamLayout(max_ack_pending=10)
        )


def test_the_stream_sources_only_reports_and_statuses_from_mqtt_msgs():
    config = stream_config(StreamLayout(prefix="fleet/v2", replicas=3))
    assert not config.subjects, "capturing subjects directly can lose PUBACKed reports"
    (source,) = config.sources
    assert source.name == "$MQTT_msgs"
    assert [(t.src, t.dest) for t in source.subject_transforms] == [
        ("$MQTT.msgs.fleet.v2.*.report", "fleet.v2.{{wildcard(1)}}.report"),
        ("$MQTT.msgs.fleet.v2.*.status", "fleet.v2.{{wildcard(1)}}.status"),
    ]
    consumer = consumer_config(StreamLayout())
    assert consumer.ack_policy == "explicit"
    assert consumer.max_deliver > StreamLayout().poison_after


@dataclass
class _Msg:
    sequence: int
    deliveries: int = 1
    poison: bool = False


def _crashing_collector(msgs: list[_Msg], poison_after: int) -> tuple[set[int], set[int], int]:
    """Rounds of: fetch everything unacknowledged, handle it in the plan's order, and crash on
    the poison message (everything not yet acknowledged comes back, one delivery more). The
    sequences stored as reports, those stored as rejections, and the most deliveries a
    good message needed."""
    pending, stored, rejected, most = list(msgs), set(), set(), 1
    for _ in range(2 * poison_after):
        if not pending:
            break
        plan = DeliveryPlan.of(pending, poison_after=poison_after)
        order = [*([plan.batch] if plan.batch else []), *([m] for m in plan.alone)]
        order += [[m] for m in plan.poison]
        crashed = False
        for group in order:
            if all(m in plan.poison for m in group):
                rejected.update(m.sequence for m in group)
            elif any(m.poison for m in group):
                crashed = True
                break
            else:
                stored.update(m.sequence for m in group)
                most = max(most, *(m.deliveries for m in group))
            pending = [m for m in pending if m not in group]
        if crashed:
            for m in pending:
                m.deliveries += 1
    return stored, rejected, most


@given(
    size=st.integers(1, 30),
    where=st.integers(0, 29),
    poison_after=st.integers(4, 8),
)
def test_a_message_that_crashes_collectors_is_rejected_and_its_batch_mates_are_stored(
    size, where, poison_after
):
    msgs = [_Msg(100 + i, poison=(i == where % size)) for i in range(size)]
    stored, rejected, most = _crashing_collector(msgs, poison_after)
    poison = 100 + where % size
    assert rejected == {poison}
    assert stored == {m.sequence for m in msgs} - {poison}
    # Every batch-mate is acknowledged within two redeliveries, far below poison_after.
    assert most <= 3


def test_redeliveries_go_alone_after_the_first_deliveries():
    plan = DeliveryPlan.of(
        [_Msg(5, 2), _Msg(9, 1), _Msg(7, 3), _Msg(6, 2), _Msg(8, 3), _Msg(4, 6)], poison_after=5
    )
    assert [m.sequence for m in plan.batch] == [9]
    assert [(m.sequence, m.deliveries) for m in plan.alone] == [(5, 2), (6, 2), (8, 3), (7, 3)]
    assert [m.sequence for m in plan.poison] == [4]


# -- the command line ----------------------------------------------------------------------


def test_collect_nats_bad_url(tmp_path):
    result = run_edgekit(
        "collect", "--nats", "http://h1:4222", "--db", f"sqlite:///{tmp_path}/x.db"
    )
    assert_one_clear_error(result, "'http://h1:4222' must start with nats:// or tls://")


@pytest.mark.parametrize(
    "flag", [["--broker", "mqtt://h:1883"], ["--share", "g"], ["--embedded-broker"]]
)
def test_collect_nats_refuses_mqtt_only_options(flag, tmp_path):
    result = run_edgekit("collect", "--nats", "nats://h1", *flag, "--db", f"sqlite:///{tmp_path}/x")
    assert_one_clear_error(result, f"{flag[0]} is for an MQTT broker")


def test_collect_nats_bad_max_age(tmp_path):
    result = run_edgekit("collect", "--nats", "nats://h1", "--max-age", "1w")
    assert_one_clear_error(result, "'1w' is not a duration")


def test_collect_nats_nothing_listening(tmp_path):
    port = free_port()
    result = run_edgekit(
        "collect", "--nats", f"nats://u:pw@127.0.0.1:{port}", "--db", f"sqlite:///{tmp_path}/x.db",
        timeout=60,
    )  # fmt: skip
    assert_one_clear_error(result, f"cannot connect to NATS at nats://u@127.0.0.1:{port}")
    assert "pw" not in result.stderr.replace("pw@", "")


def test_collect_nats_without_nats_py(tmp_path):
    # The interpreter the console script runs, with nats-py made unimportable.
    code = (
        "import sys; sys.modules['nats'] = None; "
        "sys.argv = ['edgekit', 'collect', '--nats', 'nats://127.0.0.1:1', '--db', "
        f"'sqlite:///{tmp_path}/x.db']; from edgekit.cli import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert_one_clear_error(result, "nats-py is not installed", "pip install 'edgekit[collector]'")
