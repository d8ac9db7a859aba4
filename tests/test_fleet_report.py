"""The fleet report's figures and its four formats, from a real store."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from report_factory import BUNDLES, make_report

from edgekit.collector import Store
from edgekit.fleet_report import fleet_figures, render
from edgekit.fleet_report.render import CSV_COLUMNS
from edgekit.vocab import ReportFormat


@pytest.fixture
def figures(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'fleet.db'}") as store:
        for seq in range(4):
            store.add_report(make_report("rpi4-a", sequence=seq * 7, p50_ms=3.6, accuracy=90.0))
        store.add_report(make_report("rpi5-a", bundle=BUNDLES[1], p50_ms=1.1, accuracy=None))
        store.add_status("rpi4-a", "online")
        store.add_status("rpi5-a", "offline")
        store.add_rejected("edgekit/v1/x|y/report", b"{", "payload: Invalid | JSON")
        return fleet_figures(store.snapshot())


def test_closed_loop_and_accuracy_deltas(figures):
    rows = {r.device_id: r for r in figures.device_bundles}
    a = rows["rpi4-a"]
    assert a.measured_over_estimated == pytest.approx(3.6 / BUNDLES[0].est_latency_ms)
    assert a.delta_vs_fp32 == pytest.approx(90.0 - BUNDLES[0].fp32)
    assert a.delta_vs_build == pytest.approx(90.0 - BUNDLES[0].quantized)
    assert a.device_status == "online"
    assert rows["rpi5-a"].accuracy_on_device is None
    assert rows["rpi5-a"].delta_vs_fp32 is None
    loops = {p.profile: p for p in figures.profiles}
    assert loops["rpi4"].reports == 4
    assert loops["rpi4"].measured_over_estimated == pytest.approx(1.5)
    assert figures.devices_online == 1


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


def test_csv_has_one_row_per_device_and_bundle(figures):
    rows = list(csv.DictReader(io.StringIO(render(figures, ReportFormat.CSV, source="x"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["device_id"] for r in rows] == ["rpi4-a", "rpi5-a"]
    assert float(rows[0]["measured_over_estimated"]) == pytest.approx(1.5)
    assert rows[1]["accuracy_on_device"] == ""


def test_markdown_tables_stay_tables(figures):
    text = render(figures, ReportFormat.MD, source="x")
    assert "| rpi4-a | fashion-cnn-rpi4 | rpi4 |" in text
    assert "1.50x" in text
    # A pipe inside a cell is escaped, so the row keeps its column count.
    line = next(line for line in text.splitlines() if "Invalid" in line)
    assert "Invalid \\| JSON" in line
    assert len(re.findall(r"(?<!\\)\|", line)) == 5


def test_html_is_self_contained(figures):
    html = render(figures, ReportFormat.HTML, source="x")
    assert html.count('class="plotly-graph-div"') == 5
    # plotly.js is inline; nothing is fetched from the network.
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"<link[^>]+href=\"?https?:", html)


def test_html_escapes_what_devices_send(tmp_path):
    hostile = "<script>alert(1)</script>"
    report = make_report("rpi4-a")
    data = json.loads(report.to_json())
    data["host"]["hostname"] = hostile
    data["bundle_id"] = "</script><img src=x onerror=alert(2)>"
    with Store(f"sqlite:///{tmp_path / 'f.db'}") as store:
        store.add_report(type(report).model_validate(data))
        html = render(fleet_figures(store.snapshot()), ReportFormat.HTML, source="x")
    assert hostile not in html
    assert "<img src=x" not in html


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


def test_format_follows_the_file_suffix(tmp_path):
    assert ReportFormat.for_path(tmp_path / "a.md") is ReportFormat.MD
    assert ReportFormat.for_path(tmp_path / "a.JSON") is ReportFormat.JSON
    assert ReportFormat.for_path(tmp_path / "a.csv") is ReportFormat.CSV
    assert ReportFormat.for_path(tmp_path / "a.html") is ReportFormat.HTML
    assert ReportFormat.for_path(tmp_path / "report") is ReportFormat.HTML
