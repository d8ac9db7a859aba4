"""The fleet report's figures and its formats, from a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import statistics

import pytest
from fleet_fixtures import (
    START,
    V2,
    Board,
    figures_of,
    report,
    store_fleet,
    store_judged_rollout,
)
from report_factory import BUNDLES, make_report
from rich.console import Console

from edgekit.collector import Store
from edgekit.collector.rollout_queries import RolloutView, WaveView
from edgekit.fleet_report import fleet_figures, print_summary, render
from edgekit.fleet_report.hosts import HostMatch
from edgekit.fleet_report.render import CSV_COLUMNS
from edgekit.vocab import ReportFormat


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
    return figures_of(url)


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
    plain = render(figures_of(url), ReportFormat.HTML, source="x")
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


# -- build figures, candidates chosen on boards, rollouts' gates -------------------------------


def _section(html: str, view: str) -> str:
    """One view of the page, its whitespace collapsed."""
    start = html.index(f'id="view-{view}"')
    return " ".join(html[start : html.index("</section>", start)].split())


def _html_row(section: str, needle: str) -> str:
    """The table row of ``section`` holding ``needle``."""
    return next(row for row in section.split("<tr>") if needle in row)


def test_build_accuracy_names_its_samples_and_slower_than_fp32_is_warned(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    slower = dataclasses.replace(BUNDLES[0], samples=200, host_p50_ms=2.6, host_p50_fp32_ms=2.2)
    faster = dataclasses.replace(BUNDLES[1], samples=1, host_p50_ms=0.9, host_p50_fp32_ms=1.4)
    older = BUNDLES[2]  # reports of bundles from before these figures: none of them
    store_fleet(url, [Board("pi4", bundles=(slower,)), Board("pi5", bundles=(faster,)),
                      Board("gw", bundles=(older,), machine="x86_64")])  # fmt: skip
    f = figures_of(url)
    label = {b.bundle_id: b.label for b in f.bundles}
    warning = (
        f"{label[slower.bundle_id]}: slower than fp32 on its build host: "
        f"{slower.host_p50_ms:.4g} ms against {slower.host_p50_fp32_ms:.4g} ms"
    )
    on = {
        slower.bundle_id: f"build, eval sample, {slower.samples} samples",
        faster.bundle_id: f"build, eval sample, {faster.samples} sample",
        older.bundle_id: "sample count unknown",
    }
    assert f.fp32_warnings == (warning,)  # not the faster bundle, nor the one without figures
    assert {b.bundle_id: b.samples for b in f.bundles} == {
        s.bundle_id: s.samples for s in (slower, faster, older)
    }
    html = render(f, ReportFormat.HTML, source="x")
    warned = re.search(r'<ul class="warn" id="fp32-warnings">(.*?)</ul>', html, re.S)
    assert warned is not None
    assert re.findall(r"<li>(.*?)</li>", warned[1]) == [warning]
    assert warned.start() > html.index('id="view-overview"')
    bundles = _section(html, "bundles")
    for bundle_id, text in on.items():
        assert text in _html_row(bundles, label[bundle_id])
    assert "bad" in _html_row(bundles, label[slower.bundle_id]).split(on[slower.bundle_id])[1]
    markdown = render(f, ReportFormat.MD, source="x").splitlines()
    assert f"- {warning}" in markdown
    for bundle_id, text in on.items():
        assert text in next(line for line in markdown if line.startswith(f"| {label[bundle_id]}"))
    data = json.loads(render(f, ReportFormat.JSON, source="x"))
    assert data["fp32_warnings"] == [warning]
    for b in data["bundles"]:
        assert on[b["bundle_id"]] in b["build_accuracy_on"]
    console = Console(record=True, width=400)
    print_summary(f, console)
    terminal = console.export_text()
    assert f"warning: {warning}" in terminal
    assert all(text in terminal for text in on.values())
    assert label[faster.bundle_id] not in terminal.split("warning:", 1)[1]
    table = render(f, ReportFormat.CSV, source="x")
    rows = {r["device_id"]: r for r in csv.DictReader(io.StringIO(table))}
    assert rows["pi4"]["accuracy_build_samples"] == str(slower.samples)
    assert rows["gw"]["accuracy_build_samples"] == ""


# Per board: the candidate it chose, and each candidate's p50 (None: it could not run) and
# whether it was within budget; then the runner-up each board's choice must be set against.
CHOICES = {
    "gw-0": ("model.onnx", {"model.onnx": (0.5, True), "model.tflite": (0.9, True)}),
    "gw-1": ("model.onnx", {"model.onnx": (0.6, True), "model.tflite": (0.75, True)}),
    "gw-2": ("model.onnx", {"model.onnx": (0.4, True), "model.tflite": (0.3, False),
                            "model-fp16.tflite": (0.52, True)}),
    "gw-3": ("model.tflite", {"model.onnx": (1.0, True), "model.tflite": (0.7, True)}),
    "gw-4": ("model.onnx", {"model.onnx": (0.45, True), "model.tflite": (0.2, False),
                            "model-fp16.tflite": (None, False)}),
}  # fmt: skip
RUNNER_UP = {"gw-0": "model.tflite", "gw-1": "model.tflite", "gw-2": "model-fp16.tflite",
             "gw-3": "model.onnx", "gw-4": None}  # fmt: skip


def _selection(chosen: str, candidates: dict[str, tuple[float | None, bool]]) -> dict:
    return {
        "chosen": chosen,
        "measured_at": START.isoformat(),
        "candidates": [{"artifact": a, "p50_ms": p50, "within_budget": ok}
                       for a, (p50, ok) in candidates.items()],
    }  # fmt: skip


def test_candidates_view_shows_each_boards_margin_and_a_summary_per_bundle(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    bundle = BUNDLES[2]
    with Store(url) as store:
        for device, (chosen, candidates) in CHOICES.items():
            store.add_report(report(device, 0, bundle=bundle, machine="x86_64",
                                    selection=_selection(chosen, candidates)))  # fmt: skip
    f = figures_of(url)
    expected = {}
    for device, (chosen, candidates) in CHOICES.items():
        rival = RUNNER_UP[device]
        won = candidates[chosen][0]
        lost = candidates[rival][0] if rival else None
        margin = (lost / won - 1) * 100 if won and lost else None
        expected[device] = (chosen, won, rival, lost, margin)
    assert sorted(c.device_id for c in f.choices) == sorted(expected)
    for c in f.choices:
        got = (c.chosen, c.chosen_p50_ms, c.runner_up, c.runner_up_p50_ms, c.margin_pct)
        assert got == pytest.approx(expected[c.device_id])
    lines = []
    for chosen in ("model.onnx", "model.tflite"):  # the most chosen first
        boards = [d for d, e in expected.items() if e[0] == chosen]
        margins = [expected[d][4] for d in boards if expected[d][4] is not None]
        plural = "s" if len(boards) > 1 else ""
        lines.append(f"{len(boards)} board{plural} chose {chosen} "
                     f"(median margin {statistics.median(margins):.1f} %)")  # fmt: skip
    assert [s.text for s in f.choice_summaries] == lines
    label = f.bundles[0].label
    view = _section(render(f, ReportFormat.HTML, source="x"), "candidates")
    for line in lines:
        assert f"<li>{label}: {line}</li>" in view
    for device, (_, won, rival, lost, margin) in expected.items():
        row = _html_row(view, f'href="#device/{device}"')
        if rival is None:
            assert "no other candidate within budget ran" in row
        else:
            assert f"{won:.3f} ms against {lost:.3f} ms ({rival}): {margin:+.1f} %" in row
    markdown = render(f, ReportFormat.MD, source="x")
    for line in lines:
        assert f"- {label}: {line}" in markdown
    gw0 = expected["gw-0"]
    assert f"| gw-0 | {label} | {gw0[0]} | {gw0[1]:.3f} | {gw0[2]} | {gw0[3]:.3f} |" in markdown
    data = json.loads(render(f, ReportFormat.JSON, source="x"))
    assert [s["boards"] for s in data["choice_summaries"]] == [4, 1]


def test_rollout_waves_show_each_boards_gate_figures(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    verdict = store_judged_rollout(url, "r-gate-01", old=BUNDLES[0], new=V2[0],
                                   speeds={"pi-fast": 0.9, "pi-slow": 3.0})  # fmt: skip
    f = figures_of(url)
    (rollout,) = f.rollouts
    assert rollout.waves[0].verdict == verdict
    by_board = {b.device_id: b for b in verdict.boards}
    assert (by_board["pi-fast"].verdict, by_board["pi-slow"].verdict) == ("pass", "fail")
    view = _section(render(f, ReportFormat.HTML, source="x"), "rollouts")
    assert f"r-gate-01: {V2[0].bundle_id}" in view
    assert f"failed: {verdict.reason}" in view
    assert f"at most {verdict.p50_ratio_limit:g}x its own on the previous bundle" in view
    for device, b in by_board.items():
        row = _html_row(view, f'href="#device/{device}"')
        assert f"<td>{b.verdict}</td>" in row
        for figure in (b.p50_new_ms, b.p50_previous_ms):
            assert f"{figure:.3f} ({verdict.windows} windows)" in row
        assert f"{b.p50_ratio:.2f}x (at most {verdict.p50_ratio_limit:g}x)" in row
        assert f"{b.accuracy_new:.2f}" in row
        assert f"{b.accuracy_build:.2f} (budget {verdict.accuracy_budget_pt:g} pt)" in row
        assert (" bad" in row) is (b.p50_ratio > verdict.p50_ratio_limit)
    assert by_board["pi-slow"].reason in _html_row(view, 'href="#device/pi-slow"')
    markdown = render(f, ReportFormat.MD, source="x")
    slow = by_board["pi-slow"]
    assert (f"| canary | pi-slow | fail | {slow.p50_new_ms:.3f} / {slow.p50_previous_ms:.3f} | "
            f"{slow.p50_ratio:.2f}x |") in markdown  # fmt: skip
    assert f"| {verdict.p50_ratio_limit:g}x | {verdict.accuracy_budget_pt:g} pt |" in markdown
