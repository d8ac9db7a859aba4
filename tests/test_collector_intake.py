"""The wire-protocol rules the collector applies to each message, without network or database."""

from __future__ import annotations

import json

import pytest
from report_factory import make_report

from edgekit.collector.intake import AcceptedReport, Rejection, StatusUpdate, classify
from edgekit.schema import MAX_REPORT_BYTES, utc_now

PREFIX = "edgekit/v1"


def _classify(topic: str, payload: bytes, *, retained: bool = False):
    return classify(topic, payload, prefix=PREFIX, retained=retained, received_at=utc_now())


def test_valid_report_is_accepted_with_its_payload():
    report = make_report("rpi4-a")
    item = _classify("edgekit/v1/rpi4-a/report", report.to_json())
    assert isinstance(item, AcceptedReport)
    assert item.report == report
    assert item.raw == report.to_json()


def test_statuses():
    online = _classify("edgekit/v1/rpi4-a/status", b"online", retained=True)
    assert online == StatusUpdate("rpi4-a", "online", True, online.received_at)
    offline = _classify("edgekit/v1/rpi4-a/status", b"offline")
    assert isinstance(offline, StatusUpdate)
    assert offline.status == "offline"


def _spoofed() -> tuple[str, bytes]:
    return "edgekit/v1/rpi4-a/report", make_report("rpi4-b").to_json()


def _wrong_type() -> tuple[str, bytes]:
    data = json.loads(make_report("rpi4-a").to_json())
    data["latency"]["p50_ms"] = "fast"
    return "edgekit/v1/rpi4-a/report", json.dumps(data).encode()


def _unknown_schema() -> tuple[str, bytes]:
    data = json.loads(make_report("rpi4-a").to_json())
    data["schema"] = "edgekit.report/99"
    return "edgekit/v1/rpi4-a/report", json.dumps(data).encode()


def _extra_key() -> tuple[str, bytes]:
    data = json.loads(make_report("rpi4-a").to_json())
    data["surprise"] = 1
    return "edgekit/v1/rpi4-a/report", json.dumps(data).encode()


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (("edgekit/v1/rpi4-a/report", b"{not json"), "Invalid JSON"),
        (("edgekit/v1/rpi4-a/report", b""), "Invalid JSON"),
        (("edgekit/v1/rpi4-a/report", b"\xff\xfe\x00"), "Invalid JSON"),
        (("edgekit/v1/rpi4-a/report", b"[]"), "payload"),
        (("edgekit/v1/rpi4-a/report", b"x" * (MAX_REPORT_BYTES + 1)), "exceeds"),
        (_spoofed(), "does not match topic device id 'rpi4-a'"),
        (_wrong_type(), "latency.p50_ms"),
        (_unknown_schema(), "schema"),
        (_extra_key(), "surprise"),
        (("edgekit/v1/rpi4-a/status", b"maybe"), "not 'online' or 'offline'"),
        (("edgekit/v1/rpi4-a/config", b"{}"), "is not edgekit/v1/<device_id>/"),
        (("edgekit/v1/a/b/report", b"{}"), "is not edgekit/v1/<device_id>/"),
    ],
    ids=[
        "bad-json",
        "empty",
        "binary",
        "array",
        "huge",
        "spoofed-device",
        "wrong-type",
        "unknown-schema",
        "unknown-key",
        "bad-status",
        "unknown-kind",
        "nested-topic",
    ],
)
def test_off_schema_messages_are_rejected_with_a_reason(message, reason):
    topic, payload = message
    item = _classify(topic, payload)
    assert isinstance(item, Rejection)
    assert reason in item.reason
    assert item.topic == topic
    assert item.payload == payload
