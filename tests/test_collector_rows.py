"""The collector's row definitions: every value a report carries filed under its own column,
read back column by column on real SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from report_factory import make_report

from edgekit.collector import Store
from edgekit.collector.intake import AcceptedReport, Rejection, StatusUpdate
from edgekit.collector.rows import (
    HOST_COLUMNS,
    REPORT_COLUMNS,
    bundle_build_row,
    bundle_row,
    host_values,
    rejected_row,
    report_row,
    sqlite_time,
    status_row,
)
from edgekit.collector.tables import (
    Bundle,
    BundleBuild,
    Device,
    RejectedRow,
    ReportRow,
    StatusRow,
    as_utc,
)
from edgekit.schema import parse_report, utc_now


def _columns(model: type) -> set[str]:
    return {c.name for c in model.__table__.columns} - {"id"}  # type: ignore[attr-defined]


def test_each_row_definition_names_exactly_its_tables_columns():
    """Both insert paths are generated from these definitions: a key that is no column, or a
    column without a key, must not go unnoticed."""
    now = utc_now()
    report = make_report("rpi4-a")
    assert set(report_row(AcceptedReport(report, now))) == _columns(ReportRow)
    assert set(REPORT_COLUMNS) == _columns(ReportRow)
    assert len(REPORT_COLUMNS) == len(_columns(ReportRow))
    assert set(bundle_row(report, now)) == _columns(Bundle)
    assert set(bundle_build_row(report)) == _columns(BundleBuild)
    assert set(host_values(report)) == set(HOST_COLUMNS)
    assert set(HOST_COLUMNS) <= _columns(Device)
    assert set(status_row(StatusUpdate("rpi4-a", "online", False, now))) == _columns(StatusRow)
    assert set(rejected_row(Rejection("t", b"x", "why", now))) == _columns(RejectedRow)


_T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
# Every figure differs from every other of its type, so a value filed under another column of
# the same type (two columns swapped in the table or the row definition) reads back wrong.
DISTINCT_PAYLOAD = {
    "schema": "edgekit.report/1",
    "message_id": "distinct-0001",
    "device_id": "dev-distinct",
    "sequence": 5,
    "bundle_id": "bundle-distinct",
    "bundle_digest": hashlib.sha256(b"bundle-distinct").hexdigest(),
    "profile": "profile-distinct",
    "artifact": "model-distinct.onnx",
    "format": "onnx",
    "backend": "onnxruntime",
    "backend_version": "9.8.7",
    "threads": 3,
    # One timestamp in another zone and one with microseconds: both are stored in UTC.
    "started_at": (_T0 + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=2))).isoformat(),
    "finished_at": (_T0 + timedelta(seconds=31, microseconds=250_001)).isoformat(),
    "latency": {
        "count": 7,
        "mean_ms": 2.25,
        "std_ms": 0.125,
        "min_ms": 1.5,
        "p50_ms": 2.0,
        "p90_ms": 2.5,
        "p99_ms": 3.0,
        "max_ms": 3.5,
        "init_ms": 40.5,
        "first_ms": 6.75,
    },
    "accuracy": {"metric": "agreement", "value": 88.5, "samples": 11},
    "peak_rss_mb": 48.25,
    "build": {
        "est_latency_ms": 1.75,
        "metric": "top1",
        "fp32": 91.5,
        "quantized": 90.25,
        "model_bytes": 98_765,
        "samples": 19,
        "variant": "int8 QDQ",
        "host_p50_ms": 0.375,
        "host_p50_fp32_ms": 0.625,
    },
    "host": {
        "hostname": "host-distinct",
        "machine": "machine-distinct",
        "system": "system-distinct",
        "python": "3.11.9",
        "cpu_count": 6,
    },
    "dropped_reports": 13,
    "workload_inputs": 17,
}
RECEIVED_AT = _T0 + timedelta(minutes=5)
EXPECTED_REPORT_ROW = {
    "message_id": "distinct-0001",
    "device_id": "dev-distinct",
    "bundle_digest": DISTINCT_PAYLOAD["bundle_digest"],
    "bundle_id": "bundle-distinct",
    "profile": "profile-distinct",
    "format": "onnx",
    "backend": "onnxruntime",
    "backend_version": "9.8.7",
    "threads": 3,
    "sequence": 5,
    "started_at": _T0 + timedelta(seconds=1),
    "finished_at": _T0 + timedelta(seconds=31, microseconds=250_001),
    "received_at": RECEIVED_AT,
    "latency_count": 7,
    "mean_ms": 2.25,
    "std_ms": 0.125,
    "min_ms": 1.5,
    "p50_ms": 2.0,
    "p90_ms": 2.5,
    "p99_ms": 3.0,
    "max_ms": 3.5,
    "init_ms": 40.5,
    "first_ms": 6.75,
    "accuracy_metric": "agreement",
    "accuracy_value": 88.5,
    "accuracy_samples": 11,
    "peak_rss_mb": 48.25,
    "est_latency_ms": 1.75,
    "dropped_reports": 13,
    "workload_inputs": 17,
}
EXPECTED_BUNDLE_ROW = {
    "bundle_digest": DISTINCT_PAYLOAD["bundle_digest"],
    "bundle_id": "bundle-distinct",
    "profile": "profile-distinct",
    "artifact": "model-distinct.onnx",
    "format": "onnx",
    "est_latency_ms": 1.75,
    "metric": "top1",
    "fp32": 91.5,
    "quantized": 90.25,
    "model_bytes": 98_765,
    "first_seen": RECEIVED_AT,
}
EXPECTED_BUILD_ROW = {
    "bundle_digest": DISTINCT_PAYLOAD["bundle_digest"],
    "samples": 19,
    "variant": "int8 QDQ",
    "host_p50_ms": 0.375,
    "host_p50_fp32_ms": 0.625,
}
EXPECTED_DEVICE_ROW = {
    "device_id": "dev-distinct",
    "hostname": "host-distinct",
    "machine": "machine-distinct",
    "system": "system-distinct",
    "python": "3.11.9",
    "cpu_count": 6,
    "first_seen": RECEIVED_AT,
    "last_seen": RECEIVED_AT,
    "last_status": None,
    "status_at": None,
}


def _stored(url: str, model: type) -> dict[str, object]:
    """The one row of ``model``'s table, read by column name through SQLAlchemy's types."""
    from sqlalchemy import create_engine, select

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(model.__table__)).one()._mapping  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    return {k: as_utc(v) if isinstance(v, datetime) else v for k, v in row.items()}


@pytest.mark.parametrize("how", ["batch", "single"])
def test_every_figure_is_stored_under_its_own_column(store_url, how):
    """Read back column by column (SQLite takes the driver's fast path, PostgreSQL SQLAlchemy's
    insert; a single report goes without the look-up first)."""
    payload = json.dumps(DISTINCT_PAYLOAD).encode()
    report = parse_report(payload)
    with Store(store_url) as store:
        if how == "batch":
            result = store.add_batch([AcceptedReport(report, RECEIVED_AT, payload, "t")])
            assert result.stored == 1
        else:
            assert store.add_report(report, received_at=RECEIVED_AT) is True
    stored = _stored(store_url, ReportRow)
    raw = stored.pop("raw_json")
    assert json.loads(raw) == json.loads(payload if how == "batch" else report.to_json())
    stored.pop("id")
    assert stored == EXPECTED_REPORT_ROW
    assert _stored(store_url, Bundle) == EXPECTED_BUNDLE_ROW
    assert _stored(store_url, BundleBuild) == EXPECTED_BUILD_ROW
    assert _stored(store_url, Device) == EXPECTED_DEVICE_ROW
    # And the report's snapshot reads the build figures back beside the bundle's.
    with Store(store_url, create=False) as reader:
        (bundle,) = reader.snapshot().bundles
    assert {k: getattr(bundle, k) for k in EXPECTED_BUILD_ROW} == EXPECTED_BUILD_ROW


@pytest.mark.parametrize(
    "when",
    [
        datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        datetime(2025, 3, 1, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=-5))),
        datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        parse_report(json.dumps(DISTINCT_PAYLOAD).encode()).started_at,  # pydantic's own tzinfo
    ],
)
def test_the_fast_path_writes_timestamps_as_sqlalchemy_does(when):
    """SQLite compares and orders these as text (max(received_at)): both writers must agree."""
    from sqlalchemy.dialects import sqlite

    write = sqlite.DATETIME().bind_processor(sqlite.dialect())
    assert write is not None
    assert sqlite_time(when) == write(when.astimezone(UTC).replace(tzinfo=None))
