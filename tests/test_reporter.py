"""The MQTT reporter against a real Mosquitto, checked by a real paho subscriber."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest
from fixtures_mqtt import Subscriber
from mosquitto_launcher import Credentials, MosquittoBroker, make_ca
from report_factory import sample_report

from edgekit._net import free_port
from edgekit._wait import wait_until
from edgekit.errors import MqttConfigError, ReporterError
from edgekit.mqtt import BrokerSettings, SessionOptions, TlsFiles
from edgekit.runtime.outbox import Outbox
from edgekit.runtime.reporter import Reporter
from edgekit.schema import (
    STATUS_OFFLINE,
    STATUS_ONLINE,
    Report,
    parse_report,
    report_topic,
    status_topic,
)

DEVICE = "pi-bench-01"
REPORTS = report_topic(DEVICE)
STATUS = status_topic(DEVICE)


def _settings(url: str, *, tls: TlsFiles | None = None) -> BrokerSettings:
    # Short delays and timeouts: every wait in these tests is bounded and small.
    session = SessionOptions(
        client_id=f"edgekit-{DEVICE}", connect_timeout_s=3.0, reconnect_min_s=1, reconnect_max_s=2
    )
    return BrokerSettings.from_url(url, session=session, tls_files=tls)


def _put(outbox: Outbox, count: int, *, start: int = 0) -> list[Report]:
    """Put ``count`` reports in the outbox as the daemon does, before publishing them."""
    reports = [sample_report(DEVICE, sequence=i) for i in range(start, start + count)]
    for report in reports:
        outbox.put(report.message_id, REPORTS, report.to_json())
    return reports


def _ids(reports: list[Report]) -> set[str]:
    return {report.message_id for report in reports}


def _distinct_reports(subscriber: Subscriber, expected: set[str], timeout: float) -> set[str]:
    """Message ids of schema-valid reports received until all ``expected`` came (or timeout)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not expected <= seen:
        message = subscriber.next(max(0.0, deadline - time.monotonic()))
        seen.add(parse_report(message.payload).message_id)
    return seen


# -- delivery ---------------------------------------------------------------------------------


def test_reports_arrive_schema_valid_and_outbox_empties(mqtt_broker, tmp_path):
    with (
        Subscriber(mqtt_broker, REPORTS) as subscriber,
        Outbox(tmp_path / "outbox.db") as outbox,
        Reporter(_settings(mqtt_broker.url), outbox, device_id=DEVICE) as reporter,
    ):
        assert reporter.connected
        reports = [sample_report(DEVICE, sequence=i) for i in range(25)]
        for report in reports:
            outbox.put(report.message_id, reporter.report_topic, report.to_json())
            reporter.publish_report(report)
        assert reporter.flush(timeout=10) == 0
        assert len(outbox) == 0
        received = [parse_report(m.payload) for m in subscriber.collect(25, timeout=10)]
    assert {r.message_id for r in received} == {r.message_id for r in reports}
    assert received[0] == reports[0]


def test_pending_reports_from_a_previous_run_are_sent_on_start(mqtt_broker, tmp_path):
    path = tmp_path / "outbox.db"
    with Outbox(path) as outbox:
        ids = _ids(_put(outbox, 5))  # the daemon crashed before publishing these
    with (
        Subscriber(mqtt_broker, REPORTS) as subscriber,
        Outbox(path) as outbox,
        Reporter(_settings(mqtt_broker.url), outbox, device_id=DEVICE) as reporter,
    ):
        assert reporter.flush(timeout=10) == 0
        assert _distinct_reports(subscriber, ids, timeout=10) == ids


def test_status_is_retained_online_then_offline_on_clean_close(mqtt_broker, tmp_path):
    with (
        Outbox(tmp_path / "outbox.db") as outbox,
        Reporter(_settings(mqtt_broker.url), outbox, device_id=DEVICE) as reporter,
    ):
        assert reporter.connected
        with Subscriber(mqtt_broker, STATUS) as late_joiner:
            message = late_joiner.next(timeout=5)
            assert (message.payload, message.retain) == (STATUS_ONLINE, True)
        started = time.monotonic()
    assert time.monotonic() - started < 5
    with Subscriber(mqtt_broker, STATUS) as late_joiner:
        message = late_joiner.next(timeout=5)
        assert (message.payload, message.retain) == (STATUS_OFFLINE, True)


_VICTIM = """
import sys, time
from edgekit.runtime.outbox import Outbox
from edgekit.mqtt import BrokerSettings, SessionOptions
from edgekit.runtime.reporter import Reporter
session = SessionOptions(client_id="edgekit-victim", keepalive_s=60)
settings = BrokerSettings.from_url(sys.argv[1], session=session)
with Outbox(sys.argv[2]) as outbox, Reporter(settings, outbox, device_id="victim-01") as reporter:
    print("connected" if reporter.connected else "not connected", flush=True)
    time.sleep(60)
"""


def test_last_will_marks_a_killed_device_offline(mqtt_broker, tmp_path):
    status = status_topic("victim-01")
    with Subscriber(mqtt_broker, status) as watcher:
        victim = subprocess.Popen(
            [sys.executable, "-c", _VICTIM, mqtt_broker.url, str(tmp_path / "outbox.db")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            watcher.wait_for_payload(STATUS_ONLINE, timeout=15)
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            # The kernel closes the socket; the broker publishes the Will at once, well
            # before the 60 s keepalive would have noticed.
            will = watcher.wait_for_payload(STATUS_OFFLINE, timeout=5)
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.wait(10)
        assert will.payload == STATUS_OFFLINE
    with Subscriber(mqtt_broker, status) as late_joiner:
        message = late_joiner.next(timeout=5)
        assert (message.payload, message.retain) == (STATUS_OFFLINE, True)


# -- outages ----------------------------------------------------------------------------------


def test_broker_restart_loses_nothing(mqtt_broker, tmp_path):
    # A persistent subscriber session: what is published while it reconnects is queued for it.
    with (
        Subscriber(mqtt_broker, REPORTS, persistent=True) as subscriber,
        Outbox(tmp_path / "outbox.db") as outbox,
        Reporter(_settings(mqtt_broker.url), outbox, device_id=DEVICE) as reporter,
    ):
        before = _put(outbox, 5)
        for report in before:
            reporter.publish_report(report)
        assert reporter.flush(timeout=10) == 0

        mqtt_broker.stop()
        wait_until(lambda: not reporter.connected, timeout_s=5, what="the disconnection")
        assert "lost" in (reporter.last_error or "")
        during = _put(outbox, 7, start=5)
        for report in during:
            assert not reporter.publish_report(report)
        assert reporter.flush(timeout=0.2) == 7
        assert len(outbox) == 7  # nothing leaves the outbox without a PUBACK

        mqtt_broker.start()
        assert reporter.flush(timeout=15) == 0
        assert reporter.connected
        seen = _distinct_reports(subscriber, _ids(before + during), timeout=15)
    assert _ids(during) <= seen


def test_unreachable_broker_at_start_buffers_without_raising(tmp_path):
    broker = MosquittoBroker(tmp_path)  # configured, not started: nothing listens on its port
    try:
        with (
            Outbox(tmp_path / "outbox.db") as outbox,
            Reporter(_settings(broker.url), outbox, device_id=DEVICE) as reporter,
        ):
            assert not reporter.connected
            assert "Connection refused" in (reporter.last_error or "")
            assert broker.url.removeprefix("mqtt://") in (reporter.last_error or "")
            reports = _put(outbox, 3)
            assert not reporter.publish_report(reports[0])
            started = time.monotonic()
            assert reporter.flush(timeout=0.5) == 3
            assert time.monotonic() - started < 2

            broker.start()
            with Subscriber(broker, REPORTS) as subscriber:
                assert reporter.flush(timeout=15) == 0
                ids = _ids(reports)
                assert _distinct_reports(subscriber, ids, timeout=10) == ids
    finally:
        broker.kill()


def test_close_is_bounded_while_the_broker_is_down(tmp_path):
    port = free_port()
    with Outbox(tmp_path / "outbox.db") as outbox:
        reporter = Reporter(_settings(f"mqtt://127.0.0.1:{port}"), outbox, device_id=DEVICE)
        with reporter:
            assert not reporter.connected
            started = time.monotonic()
        assert time.monotonic() - started < 3
        with pytest.raises(ReporterError, match="not running"):
            reporter.flush(timeout=0)


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_with_ca_and_client_certificate_delivers(mqtt_broker_tls, tmp_path):
    tls = mqtt_broker_tls.tls
    settings = _settings(mqtt_broker_tls.url, tls=TlsFiles(tls.ca, tls.client_cert, tls.client_key))
    with (
        Outbox(tmp_path / "outbox.db") as outbox,
        Reporter(settings, outbox, device_id=DEVICE) as reporter,
    ):
        assert reporter.connected, reporter.last_error
        _put(outbox, 3)
        assert reporter.flush(timeout=10) == 0


def test_tls_with_an_untrusted_broker_buffers_and_says_why(mqtt_broker_tls, tmp_path):
    other_ca, _ = make_ca(tmp_path / "other", "other-ca")
    tls = mqtt_broker_tls.tls
    settings = _settings(
        mqtt_broker_tls.url, tls=TlsFiles(other_ca, tls.client_cert, tls.client_key)
    )
    with (
        Outbox(tmp_path / "outbox.db") as outbox,
        Reporter(settings, outbox, device_id=DEVICE) as reporter,
    ):
        assert not reporter.connected
        assert "certificate verify failed" in (reporter.last_error or "")
        _put(outbox, 1)
        assert reporter.flush(timeout=0.2) == 1


def test_missing_tls_file_is_a_clear_config_error(tmp_path):
    missing = tmp_path / "missing-ca.pem"
    settings = _settings("mqtts://127.0.0.1:8883", tls=TlsFiles(ca_file=missing))
    with (
        Outbox(tmp_path / "outbox.db") as outbox,
        pytest.raises(
            MqttConfigError, match=re.escape("cannot load the TLS files for mqtts://127.0.0.1:8883")
        ) as caught,
        Reporter(settings, outbox, device_id=DEVICE),
    ):
        pass
    assert caught.value.setting == "ca_file"
    assert str(missing) in str(caught.value)


# -- refusals ---------------------------------------------------------------------------------


def test_bad_password_is_a_clear_reporter_error(mqtt_broker_with_password, tmp_path):
    broker = mqtt_broker_with_password
    user = broker.credentials.username
    url = f"mqtt://{user}:wrong-password@{broker.host}:{broker.port}"
    with Outbox(tmp_path / "outbox.db") as outbox:
        started = time.monotonic()
        with (
            pytest.raises(
                ReporterError, match="broker refused the connection: bad username or password"
            ) as caught,
            Reporter(_settings(url), outbox, device_id=DEVICE),
        ):
            pass
        assert time.monotonic() - started < 5
    assert "wrong-password" not in str(caught.value)
    assert f"user '{user}'" in str(caught.value)


def test_password_changed_while_running_stops_retrying_and_raises(
    mqtt_broker_with_password, tmp_path
):
    broker = mqtt_broker_with_password
    creds = broker.credentials
    url = f"mqtt://{creds.username}:{creds.password}@{broker.host}:{broker.port}"
    with (
        Outbox(tmp_path / "outbox.db") as outbox,
        Reporter(_settings(url), outbox, device_id=DEVICE) as reporter,
    ):
        assert reporter.connected
        broker.stop()
        broker.set_password(Credentials(creds.username, "rotated-password"))
        broker.start()
        _put(outbox, 1)
        with pytest.raises(ReporterError, match="bad username or password"):
            reporter.flush(timeout=10)
        assert not reporter.connected
        assert len(outbox) == 1  # kept for when the settings are fixed
        with pytest.raises(ReporterError, match="bad username or password"):
            reporter.publish_report(sample_report(DEVICE))


def test_missing_credentials_are_a_clear_reporter_error(mqtt_broker_with_password, tmp_path):
    with (
        Outbox(tmp_path / "outbox.db") as outbox,
        pytest.raises(ReporterError, match="broker refused the connection"),
        Reporter(_settings(mqtt_broker_with_password.url), outbox, device_id=DEVICE),
    ):
        pass


def test_right_password_connects(mqtt_broker_with_password, tmp_path):
    broker = mqtt_broker_with_password
    creds = broker.credentials
    url = f"mqtt://{creds.username}:{creds.password}@{broker.host}:{broker.port}"
    with (
        Outbox(tmp_path / "outbox.db") as outbox,
        Reporter(_settings(url), outbox, device_id=DEVICE) as reporter,
    ):
        assert reporter.connected
        _put(outbox, 2)
        assert reporter.flush(timeout=10) == 0


def test_bad_device_id_is_refused(tmp_path):
    with (
        Outbox(tmp_path / "outbox.db") as outbox,
        pytest.raises(ReporterError, match="not topic-safe"),
    ):
        Reporter(_settings("mqtt://127.0.0.1"), outbox, device_id="pi/+")
