"""edgekit demo: the whole loop on one machine, with an embedded broker and SQLite, and a
rollout of a second variant with a canary."""

from __future__ import annotations

import re
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
        bundles = db.execute(
            "SELECT device_id, count(DISTINCT bundle_digest) FROM reports GROUP BY device_id"
        ).fetchall()
        rollouts = db.execute(
            "SELECT rollout_id, bundle_id, profile, state FROM rollouts"
        ).fetchall()
        waves = db.execute("SELECT label, size, state, verdict_json FROM rollout_waves").fetchall()
    # The boards report on while the second variant is rolled out: more than two windows each.
    counts = dict(rows)
    assert set(counts) == {"rpi4-01", "jetson-nano-01"}
    assert min(counts.values()) >= 2
    assert rejected == 0
    sent = re.search(r"2 boards sent (\d+) reports; the collector stored (\d+)", result.stderr)
    assert sent is not None, result.stderr
    assert sent.group(1) == sent.group(2) == str(sum(counts.values()))  # nothing lost
    # The rollout: v2 to the rpi4 board through a canary wave, judged on what it measured.
    [(rollout_id, bundle_id, profile, state)] = rollouts
    assert profile == "rpi4"
    assert state in ("succeeded", "rolled_back")  # the gate's verdict on this machine
    assert [(label, size) for label, size, _, _ in waves] == [("canary", 1)]
    assert waves[0][2] in ("passed", "failed")
    assert '"device_id":"rpi4-01"' in waves[0][3]  # its gate figures are kept
    assert f"rollout {rollout_id}: {state}" in result.stderr
    assert dict(bundles) == {"rpi4-01": 2, "jetson-nano-01": 1}  # before and after, for rpi4
    # The report shows the rollout: its bundle, its state, its wave and the board the gate judged.
    start = html.index('id="view-rollouts"')
    shown = " ".join(html[start : html.index("</section>", start)].split())
    assert f"{rollout_id}: {bundle_id}" in shown
    assert f'<span class="badge">{state}</span>' in shown
    (label, size, wave_state, _) = waves[0]
    assert f'<tr><td>{label}</td><td class="n">{size}</td><td>{wave_state}</td>' in shown
    assert 'href="#device/rpi4-01"' in shown.split('<table class="gate">')[1]
