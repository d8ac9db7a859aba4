"""edgekit demo: the whole loop on one machine, with an embedded broker and SQLite."""

from __future__ import annotations

import sqlite3

from edgekit_testing import run_edgekit


def test_demo_builds_runs_collects_and_reports(tmp_path):
    out = tmp_path / "demo"
    # a relative --out, as the README's command uses it (the boards run in another folder)
    result = run_edgekit("demo", "--out", "demo", "--devices", "1", "--reports", "2",
                         "--interval", "0.3", "--quiet", cwd=tmp_path, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = out / "report.html"
    assert f"report: {report}" in result.stdout
    html = report.read_text()
    assert "edgekit fleet report" in html
    assert "<script src=" not in html  # self-contained: plotly inlined, nothing fetched
    with sqlite3.connect(out / "edgekit.db") as db:
        rows = db.execute("SELECT device_id, count(*) FROM reports GROUP BY device_id").fetchall()
        rejected = db.execute("SELECT count(*) FROM rejected").fetchone()[0]
    assert dict(rows) == {"rpi4-01": 2, "jetson-nano-01": 2}
    assert rejected == 0
    assert "2 boards sent 4 reports; the collector stored 4" in result.stderr
