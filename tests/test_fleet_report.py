"""The fleet report's figures and its formats, from a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
from datetime import timedelta

import pytest
from fleet_fixtures import REFERENCE, START, V2, Board, report, store_fleet, summary
from report_factory import BUNDLES, make_report

from edgekit.collector import Store
from edgekit.collector.rollout_queries import RolloutView, WaveView
from edgekit.collector.snapshot import ReportFilter
from edgekit.fleet_report import fleet_figures, render
from edgekit.fleet_report.compare import Pair, compare, interval, t975
from edgekit.fleet_report.hosts import Health, HostMatch
from edgekit.fleet_report.render import CSV_COLUMNS
from edgekit.vocab import ReportFormat


def _figures(url: str, **filters):
    with Store(url, create=False) as store:
        return fleet_figures(store.snapshot(filters=ReportFilter(**filters)))


@pytest.fixture
def figures(tmp_path):
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    with Store(url) as store:
        for seq in range(4):
            store.add_report(make_report("rpi4-a", sequence=seq * 7, p50_ms=3.6, accuracy=90.0))
        store.add_report(make_report("rpi5-a", bundle=BUNDLES[1], p50_ms=1.1, accuracy=None))
        store.add_status("rpi4-a", "online")
        store.add_status("rpi5-a", "offline")
        store.add_rejected("edgekit/v1/x|y/report", b"{", "payload: Invalid | JSON")
    return _figures(url)


def test_closed_loop_and_accuracy_deltas(figures):
    rows = {r.device_id: r for r in figures.device_bundles}
    a = rows["rpi4-a"]
    p50 = 3.6 + sum((seq * 7 % 7) * 0.05 for seq in range(4)) / 4
    assert a.p50_ms == pytest.approx(p50)
    assert a.measured_over_estimated == pytest.approx(p50 / BUNDLES[0].est_latency_ms)
    assert a.delta_vs_fp32 == pytest.approx(90.0 - BUNDLES[0].fp32)
    assert a.delta_vs_build == pytest.approx(90.0 - BUNDLES[0].quantized)
    assert a.device_status == "online"
    assert a.host is HostMatch.MATCH
    assert rows["rpi5-a"].accuracy_on_device is None
    assert rows["rpi5-a"].delta_vs_fp32 is None
    loops = {p.profile: p for p in figures.profiles}
    assert loops["rpi4"].reports == 4
    assert loops["rpi4"].measured_over_estimated == pytest.approx(1.5)
    assert figures.devices_online == 1
    assert {b.label for b in figures.bundles} == {
        f"fashion-cnn-rpi4 · {BUNDLES[0].digest[:7]} · rpi4",
        f"fashion-cnn-rpi5 · {BUNDLES[1].digest[:7]} · rpi5",
    }


def test_json_carries_every_section(figures):
    data = json.loads(render(figures, ReportFormat.JSON, source="sqlite:///fleet.db"))
    assert data["totals"] == {
        "reports": 5,
        "devices": 2,
        "devices_online": 1,
        "bundles": 2,
        "status_changes": 2,
        "rejected": 1,
    }
    assert {r["device_id"] for r in data["device_bundles"]} == {"rpi4-a", "rpi5-a"}
    assert data["profiles"][0]["profile"] == "rpi4"
    assert data["recent_rejected"][0]["reason"] == "payload: Invalid | JSON"
    for section in ("devices", "bundles", "best", "comparisons", "drift", "bundle_series"):
        assert section in data
    series = data["device_series"]["rpi4-a"][0]
    assert sum(series["windows"]) == 4
    assert data["health"]["offline"] == 1


def test_csv_has_one_row_per_device_and_bundle(figures):
    rows = list(csv.DictReader(io.StringIO(render(figures, ReportFormat.CSV, source="x"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["device_id"] for r in rows] == ["rpi4-a", "rpi5-a"]
    assert float(rows[0]["measured_over_estimated"]) == pytest.approx(1.5)
    assert rows[0]["host"] == "match"
    assert rows[1]["accuracy_on_device"] == ""


def test_markdown_tables_stay_tables(figures):
    text = render(figures, ReportFormat.MD, source="x")
    assert f"| rpi4-a | fashion-cnn-rpi4 · {BUNDLES[0].digest[:7]} · rpi4 | match |" in text
    assert "1.50x" in text
    # A pipe inside a cell is escaped, so the row keeps its column count.
    line = next(line for line in text.splitlines() if "Invalid" in line)
    assert "Invalid \\| JSON" in line
    assert len(re.findall(r"(?<!\\)\|", line)) == 5


def test_html_is_self_contained_and_carries_its_data(figures):
    html = render(figures, ReportFormat.HTML, source="x")
    # plotly.js is inline; nothing is fetched from the network.
    assert "Plotly" in html
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"<link[^>]+href=\"?https?:", html)
    blob = re.search(r'<script type="application/json" id="fleet-data">(.*?)</script>', html, re.S)
    data = json.loads(blob[1])
    assert [d["id"] for d in data["devices"]] == ["rpi4-a", "rpi5-a"]
    assert {d["health"] for d in data["devices"]} == {"reporting", "offline"}


def test_html_escapes_what_devices_send(tmp_path):
    hostile = "<script>alert(1)</script>"
    report_ = make_report("rpi4-a")
    data = json.loads(report_.to_json())
    data["host"]["hostname"] = hostile
    data["bundle_id"] = "</script><img src=x onerror=alert(2)>"
    with Store(f"sqlite:///{tmp_path / 'f.db'}") as store:
        store.add_report(type(report_).model_validate(data))
        html = render(fleet_figures(store.snapshot()), ReportFormat.HTML, source="x")
    assert hostile not in html
    assert "<img src=x" not in html
    assert "</script><img" not in html


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_empty_database_gives_a_clear_message(tmp_path, fmt):
    with Store(f"sqlite:///{tmp_path / 'empty.db'}") as store:
        figures = fleet_figures(store.snapshot())
    assert figures.is_empty
    text = render(figures, fmt, source="x")
    if fmt is ReportFormat.CSV:
        assert text.strip() == ",".join(CSV_COLUMNS)
    elif fmt is ReportFormat.JSON:
        assert json.loads(text)["totals"]["reports"] == 0
    else:
        assert "No reports yet" in text


def test_aggregates_are_exact_and_the_same_on_every_database(store_url):
    """Sums over buckets, per device and per bundle equal the plain means of the stored windows;
    SQLite and PostgreSQL bucket time the same way."""
    boards = [Board(f"rpi4-{i}", bundles=(BUNDLES[0], V2[0]), speed=1 + i / 10, windows=25)
              for i in range(3)]  # fmt: skip
    store_fleet(store_url, boards)
    f = _figures(store_url)
    assert f.report_count == 150
    assert f.axis is not None
    assert f.axis.count == 48
    raw = {
        (b.device_id, bundle.digest): [
            bundle.est_latency_ms * b.speed * (1 + 0.01 * (s % 3)) + (s % 7) * 0.05
            for s in range(k * 25, k * 25 + 25)
        ]
        for b in boards
        for k, bundle in enumerate(b.bundles)
    }
    for row in f.device_bundles:
        values = raw[(row.device_id, row.bundle_digest)]
        assert row.p50_ms == pytest.approx(sum(values) / len(values), rel=1e-12)
        assert row.reports == 25
    for series in f.bundle_series:
        assert sum(series.windows) == 75
        mine = [v for (_, d), vs in raw.items() if d == series.bundle_digest for v in vs]
        weighted = sum(p * n for p, n in zip(series.p50_ms, series.windows, strict=True))
        assert weighted / 75 == pytest.approx(sum(mine) / 75, rel=1e-12)
    history = {d.device_id: d.history for d in f.devices}
    assert [s.windows for s in history["rpi4-0"]] == [25, 25]
    assert history["rpi4-0"][0].bundle_digest == BUNDLES[0].digest


def test_filters_select_exactly_their_reports(store_url):
    store_fleet(store_url, [Board("rpi4-a", windows=10), Board("rpi5-a", bundles=(BUNDLES[1],),
                                                               windows=10)])  # fmt: skip
    assert _figures(store_url, device="rpi4-a").report_count == 10
    only = _figures(store_url, profile="rpi5")
    assert [d.device_id for d in only.devices] == ["rpi5-a"]
    assert [b.profile for b in only.bundles] == ["rpi5"]
    since = _figures(store_url, since=START + timedelta(minutes=6))
    assert since.report_count == 8  # windows 6..9 of both boards
    assert _figures(store_url, device="nobody").report_count == 0


def test_simulated_hosts_are_marked_and_left_out_of_the_estimate(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    store_fleet(url, [Board("pi-real", speed=1.2), Board("pi-vm", speed=0.1, machine="x86_64"),
                      Board("x86-gw", bundles=(BUNDLES[2],), machine="x86_64")])  # fmt: skip
    f = _figures(url)
    hosts = {d.device_id: d.host for d in f.devices}
    assert hosts == {
        "pi-real": HostMatch.MATCH,
        "pi-vm": HostMatch.SIMULATED,
        "x86-gw": HostMatch.MATCH,
    }
    rpi4 = next(b for b in f.bundles if b.profile == "rpi4")
    real = next(r for r in f.device_bundles if r.device_id == "pi-real")
    assert rpi4.board_p50_ms == pytest.approx(real.p50_ms)  # the VM's 10x faster p50 left out
    loop = next(p for p in f.profiles if p.profile == "rpi4")
    assert loop.simulated_reports == 6
    assert "simulated" in render(f, ReportFormat.HTML, source="x")


def test_health_tells_offline_from_silent(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    store_fleet(url, [Board("stopped", status="offline"), Board("quiet", status="online")])
    health = {d.device_id: d.health for d in _figures(url).devices}
    # Windows from 2025: the online board has not reported for far more than 3 intervals.
    assert health == {"stopped": Health.OFFLINE, "quiet": Health.SILENT}
    assert Health.OFFLINE.value in render(_figures(url), ReportFormat.MD, source="x")


def test_ab_with_two_boards_says_not_enough_data(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    store_fleet(url, [Board(f"pi-{i}", bundles=(BUNDLES[0], V2[0])) for i in range(2)])
    (c,) = _figures(url).comparisons
    assert not c.enough
    assert c.latency is None
    assert c.verdict.startswith("not enough data: 2 board(s)")
    assert "faster" not in c.verdict
    assert "slower" not in c.verdict


def test_ab_with_enough_boards_names_the_faster_build_with_an_interval(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    boards = [Board(f"pi-{i}", bundles=(BUNDLES[0], V2[0]), speed=1 + 0.07 * i) for i in range(5)]
    store_fleet(url, boards)
    (c,) = _figures(url).comparisons
    assert c.enough
    assert c.latency is not None
    assert c.latency.n == 5
    est, low, high = c.change_pct
    assert low < est < high < 0  # v2's estimate is 0.8x; the jitter keeps each board's ratio apart
    assert f"{V2[0].bundle_id} · {V2[0].digest[:7]} is faster" in c.verdict
    assert "95 % CI" in c.verdict


def test_t_interval_and_verdicts_on_known_numbers():
    assert t975(1) == pytest.approx(12.706)
    assert t975(60) == pytest.approx(2.000, abs=2e-3)  # the expansion beyond the table
    i = interval([1.0, 2.0, 3.0, 4.0])
    assert (i.mean, i.low, i.high) == pytest.approx(
        (2.5, 2.5 - 3.182 * 0.6455, 2.5 + 2.054), abs=1e-3
    )
    same = [Pair(f"d{k}", 1.0, 1.0 * (1 + (-1) ** k * 0.02), 5, 5, None, None) for k in range(6)]
    c = compare("rpi4", ("a", "A"), ("b", "B"), same, boards=6)
    assert c.verdict.startswith("no clear latency difference")
    few_windows = [dataclasses.replace(p, windows_b=2) for p in same]
    assert not compare("rpi4", ("a", "A"), ("b", "B"), few_windows, boards=6).enough


def test_drift_flags_a_shifted_board_and_not_a_steady_one(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    steady = summary([2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    shifted = summary([10, 8, 2, 0, 0, 0, 0, 0, 0, 0], mean=0.6)
    with Store(url) as store:
        for seq in range(10):
            for device, watched in (("steady", steady), ("shifted", shifted)):
                drift = {"eval_sample": REFERENCE, "watched": watched, "reference": REFERENCE}
                store.add_report(report(device, seq, drift=drift))
    f = _figures(url)
    flagged = {(d.device_id, d.source) for d in f.drift if d.flagged}
    assert flagged == {("shifted", "watch")}
    steady_score = next(d for d in f.drift if d.device_id == "steady" and d.source == "watch")
    assert steady_score.samples == 200
    assert steady_score.psi < steady_score.threshold
    shifted_score = next(d for d in f.drift if d.device_id == "shifted" and d.source == "watch")
    assert shifted_score.mean_shift == pytest.approx((0.6 - 0.3) / 0.35, rel=1e-6)
    assert {d.device_id for d in f.devices if d.drifting} == {"shifted"}
    assert "shifted" in render(f, ReportFormat.MD, source="x").split("## Drifting boards")[1]


def test_board_selection_and_rollouts_render_only_when_present(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    selection = {
        "chosen": "model.onnx",
        "measured_at": START.isoformat(),
        "candidates": [
            {"artifact": "model.onnx", "p50_ms": 0.5, "within_budget": True},
            {"artifact": "model.tflite", "p50_ms": 0.9, "within_budget": True, "reason": "slower"},
        ],
    }
    with Store(url) as store:
        store.add_report(report("plain", 0))
    plain = render(_figures(url), ReportFormat.HTML, source="x")
    assert 'id="view-candidates"' not in plain
    assert 'id="view-rollouts"' not in plain
    with Store(url) as store:
        store.add_report(report("chooser", 0, selection=selection))
        snapshot = store.snapshot()
    rollout = RolloutView(
        rollout_id="r1", bundle_id="fashion-cnn-rpi4-v2", bundle_digest=V2[0].digest,
        profile="rpi4", selector="rpi4-*", state="done", reason="", created_at=START,
        finished_at=None, target_states={"healthy": 3}, events=12,
        waves=(WaveView(0, "canary", 1, "passed", START, START, None),),
    )  # fmt: skip
    f = fleet_figures(dataclasses.replace(snapshot, rollouts=(rollout,)))
    html = render(f, ReportFormat.HTML, source="x")
    assert [s.device_id for s in f.selections] == ["chooser"]
    assert 'id="view-candidates"' in html
    assert "<b>model.onnx</b>" in html
    assert 'id="view-rollouts"' in html
    assert "r1: fashion-cnn-rpi4-v2" in html
    assert "3 healthy" in html


def test_psi_noise_level_tracks_the_sample_size():
    from edgekit.drift import psi, psi_noise

    small, large = [3, 2, 5], [300, 200, 500]
    assert psi_noise(small, small) > 10 * psi_noise(large, large)
    assert psi(large, large) == 0.0
    assert math.isfinite(psi([10, 0, 0], [0, 0, 10]))
