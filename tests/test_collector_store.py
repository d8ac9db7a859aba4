"""The collector's store on real SQLite and PostgreSQL: de-duplication, statuses, queries."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
from fixtures_collector import table_rows
from report_factory import BUNDLES, make_report

from edgekit.collector import Store
from edgekit.collector.intake import AcceptedReport, Rejection, StatusUpdate
from edgekit.collector.tables import REJECTED_PAYLOAD_KEEP, BundleBuild
from edgekit.errors import StoreError
from edgekit.fleet_report import fleet_figures, render
from edgekit.schema import utc_now
from edgekit.vocab import ReportFormat


def test_add_report_stores_once_and_reports_duplicates(store_url):
    report = make_report("rpi4-a", accuracy=89.5)
    with Store(store_url) as store:
        assert store.add_report(report) is True
        assert store.add_report(report) is False
        assert store.message_ids() == {report.message_id}
    rows = table_rows(store_url, "SELECT device_id, p50_ms, accuracy_value, raw_json FROM reports")
    assert len(rows) == 1
    device, p50, accuracy, raw = rows[0]
    assert (device, p50, accuracy) == ("rpi4-a", report.latency.p50_ms, 89.5)
    assert raw.encode() == report.to_json()


def test_batch_drops_repeats_inside_the_batch_and_already_stored(store_url):
    now = utc_now()
    first, second = make_report("rpi4-a"), make_report("rpi4-b")
    with Store(store_url) as store:
        store.add_report(first)
        result = store.add_batch(
            [
                AcceptedReport(second, now),
                AcceptedReport(second, now),
                AcceptedReport(first, now),
                Rejection("edgekit/v1/x/report", b"{", "bad", now),
            ]
        )
        assert (result.stored, result.duplicates, result.rejected) == (1, 2, 1)
        assert store.message_ids() == {first.message_id, second.message_id}


def test_concurrent_writers_store_each_message_id_once(store_url):
    """Two stores (as two collectors would) race on the same ids; the unique constraint wins."""
    reports = [make_report(f"dev-{i % 5}", sequence=i) for i in range(60)]
    outcomes: list[bool] = []
    lock = threading.Lock()

    def write(store: Store) -> None:
        for report in reports:
            stored = store.add_report(report)
            with lock:
                outcomes.append(stored)

    with Store(store_url) as a, Store(store_url) as b:
        threads = [threading.Thread(target=write, args=(s,)) for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sum(outcomes) == len(reports)
        assert outcomes.count(False) == len(reports)
    assert table_rows(store_url, "SELECT count(*), count(DISTINCT message_id) FROM reports") == [
        (60, 60)
    ]


def test_status_rows_only_for_changes(store_url):
    with Store(store_url) as store:
        assert store.add_status("rpi4-a", "online", retained=True) is True
        assert store.add_status("rpi4-a", "online", retained=True) is False  # re-subscription
        assert store.add_status("rpi4-a", "offline") is True
        now = utc_now()
        result = store.add_batch(
            [
                StatusUpdate("rpi4-b", "online", False, now),
                StatusUpdate("rpi4-b", "offline", False, now),
                StatusUpdate("rpi4-b", "offline", False, now),
            ]
        )
        assert result.status_changes == 2
        devices = {d.device_id: d for d in store.snapshot().devices}
    assert devices["rpi4-a"].last_status == "offline"
    assert devices["rpi4-b"].last_status == "offline"
    assert table_rows(store_url, "SELECT count(*) FROM statuses") == [(4,)]


def test_rejected_payload_is_truncated_but_its_size_kept(store_url):
    huge = b"x" * (REJECTED_PAYLOAD_KEEP * 3)
    with Store(store_url) as store:
        store.add_rejected("edgekit/v1/a/report", huge, "too big")
        snapshot = store.snapshot()
    assert snapshot.rejected_count == 1
    assert snapshot.recent_rejected[0].payload_bytes == len(huge)
    rows = table_rows(store_url, "SELECT payload, payload_bytes, truncated, reason FROM rejected")
    payload, size, truncated, reason = rows[0]
    assert (len(payload), size, bool(truncated), reason) == (
        REJECTED_PAYLOAD_KEEP,
        len(huge),
        True,
        "too big",
    )


def test_snapshot_aggregates_per_device_and_bundle(store_url):
    with Store(store_url) as store:
        for seq, p50 in enumerate((2.0, 4.0)):
            store.add_report(make_report("rpi4-a", sequence=seq * 7, p50_ms=p50, accuracy=90.0))
        store.add_report(make_report("rpi5-a", bundle=BUNDLES[1], p50_ms=1.0, accuracy=None))
        store.add_status("rpi4-a", "online")
        snap = store.snapshot()
    assert snap.report_count == 3
    rows = {(r.device_id, r.bundle_id): r for r in snap.device_bundles}
    a = rows[("rpi4-a", "fashion-cnn-rpi4")]
    assert a.reports == 2
    assert a.p50_ms == pytest.approx(3.0)  # mean of the windows' p50
    assert a.accuracy == pytest.approx(90.0)
    assert a.accuracy_samples == 400
    assert a.est_latency_ms == BUNDLES[0].est_latency_ms
    b = rows[("rpi5-a", "fashion-cnn-rpi5")]
    assert b.accuracy is None
    devices = {d.device_id: d for d in snap.devices}
    assert devices["rpi4-a"].reports == 2
    assert devices["rpi4-a"].hostname == "rpi4-a"
    assert devices["rpi4-a"].last_status == "online"
    assert {x.bundle_id: x.devices for x in snap.bundles} == {
        "fashion-cnn-rpi4": 1,
        "fashion-cnn-rpi5": 1,
    }


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("not a url", "not a database URL"),
        ("nosuchdb://x/y", "unsupported database URL scheme 'nosuchdb'"),
        ("sqlite:////nonexistent-dir/sub/edgekit.db", "unable to open database file"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/x", "failed on postgresql+psycopg://"),
    ],
)
def test_bad_database_urls_raise_store_error(url, needle):
    with pytest.raises(StoreError, match=needle.replace("+", r"\+")):
        Store(url, timeout_s=2)


def test_reader_does_not_create_a_database(tmp_path):
    missing = tmp_path / "typo.db"
    with pytest.raises(StoreError, match="no SQLite database"):
        Store(f"sqlite:///{missing}", create=False)
    assert not missing.exists()
    other = tmp_path / "other.db"
    import sqlite3

    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreError, match="not an edgekit collector database"):
        Store(f"sqlite:///{other}", create=False)


def test_password_is_not_shown(tmp_path):
    with pytest.raises(StoreError) as info:
        Store("postgresql+psycopg://u:s3cret@127.0.0.1:1/x", timeout_s=1)
    assert "s3cret" not in str(info.value)


def test_reports_the_database_refuses_become_rejections(store_url):
    """A value the database cannot hold must not look like an outage (retried forever) nor
    stop the collector: the report is stored as a rejection, the rest of the batch is kept."""
    from edgekit.schema import Report

    good = make_report("rpi4-a", sequence=1)
    data = json.loads(make_report("rpi4-a").to_json())
    data["sequence"] = 2**70  # valid JSON and schema, beyond a 64-bit column
    huge = Report.model_validate(data)
    data = json.loads(make_report("rpi4-a").to_json())
    data["host"]["hostname"] = "pi\x00"  # PostgreSQL text cannot hold NUL; SQLite can
    nul = Report.model_validate(data)
    now = utc_now()
    items = [
        AcceptedReport(good, now),
        AcceptedReport(huge, now, huge.to_json(), "edgekit/v1/rpi4-a/report"),
        AcceptedReport(nul, now, nul.to_json(), "edgekit/v1/rpi4-a/report"),
        StatusUpdate("rpi4-a", "online", False, now),
    ]
    with Store(store_url) as store:
        result = store.add_batch(items)
        postgres = store_url.startswith("postgresql")
        assert result.stored == (1 if postgres else 2)
        assert result.rejected == (2 if postgres else 1)
        assert result.status_changes == 1
        snapshot = store.snapshot()
        stored = store.message_ids()
    assert good.message_id in stored
    assert huge.message_id not in stored
    reasons = [r.reason for r in snapshot.recent_rejected]
    assert all(r.startswith("database refused the report") for r in reasons)
    assert {r.topic for r in snapshot.recent_rejected} == {"edgekit/v1/rpi4-a/report"}


def _drop_table(url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {name}"))
    finally:
        engine.dispose()


def test_a_database_made_before_bundle_builds_reads_and_a_collector_adds_it(store_url):
    """The build figures' table is optional: without it bundles read with those figures
    unknown and the report renders; a collector opening the database creates it, and the next
    report of a bundle stored before fills the bundle's row."""
    spec = replace(BUNDLES[0], samples=150, host_p50_ms=1.5, host_p50_fp32_ms=2.5)
    with Store(store_url) as store:
        store.add_report(make_report("rpi4-a", bundle=spec))
    _drop_table(store_url, BundleBuild.__tablename__)
    with Store(store_url, create=False) as reader:
        snapshot = reader.snapshot()
    (old,) = snapshot.bundles
    assert (old.samples, old.variant, old.host_p50_ms, old.host_p50_fp32_ms) == (None,) * 4
    assert (old.fp32, old.quantized) == (spec.fp32, spec.quantized)
    figures = fleet_figures(snapshot)
    for fmt in (ReportFormat.HTML, ReportFormat.MD, ReportFormat.JSON):
        assert "sample count unknown" in render(figures, fmt, source="x")
    with Store(store_url) as store:  # a collector: create_all adds the missing table
        store.add_report(make_report("rpi4-a", sequence=1, bundle=spec))
        (new,) = store.snapshot().bundles
    assert (new.samples, new.host_p50_ms, new.host_p50_fp32_ms) == (150, 1.5, 2.5)
