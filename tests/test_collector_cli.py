"""``edgekit collect`` and ``edgekit report`` as a user runs them: real broker, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import pytest
import typer
from edgekit_testing import EDGEKIT, assert_one_clear_error, run_edgekit
from fixtures_collector import publish_all, table_rows
from report_factory import make_report, report_message

from edgekit._net import free_port
from edgekit._wait import wait_until
from edgekit.cli import app
from edgekit.collector import Store


def test_collect_stores_reports_for_a_duration(collector_mosquitto, tmp_path):
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    proc = subprocess.Popen(
        [EDGEKIT, "collect", "--broker", collector_mosquitto.url, "--db", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        reports = [make_report("rpi4-01", sequence=i) for i in range(25)]
        # Publish once the collector has subscribed (it says so on stderr), or nothing queues.
        wait_until(lambda: any("collecting" in line for line in lines), what="the subscription")
        publish_all(collector_mosquitto.port, [report_message(r) for r in reports])
        wait_until(
            lambda: table_rows(db, "SELECT count(*) FROM reports") == [(25,)],
            what="25 reports stored",
        )
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(lines)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "stored 25 reports" in stderr


def test_collect_duration_and_embedded_broker(tmp_path):
    port = free_port()
    db = tmp_path / "fleet.db"
    result = run_edgekit(
        "collect",
        "--embedded-broker",
        "--broker",
        f"mqtt://127.0.0.1:{port}",
        "--db",
        f"sqlite:///{db}",
        "--duration",
        "1.5",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "stored 0 reports" in result.stderr
    assert db.exists()


def test_collect_bad_database_url(tmp_path):
    result = run_edgekit("collect", "--db", "nonsense", "--duration", "1", cwd=tmp_path)
    assert_one_clear_error(result, "not a database URL", "nonsense")


def test_collect_database_in_missing_folder(tmp_path):
    result = run_edgekit(
        "collect", "--db", f"sqlite:///{tmp_path}/no/such/dir/x.db", "--duration", "1"
    )
    assert_one_clear_error(result, "unable to open database file")


def test_collect_unreachable_broker(tmp_path):
    result = run_edgekit(
        "collect",
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
        "--db",
        f"sqlite:///{tmp_path / 'x.db'}",
        "--duration",
        "1",
    )
    assert_one_clear_error(result, "cannot connect to MQTT broker", "Connection refused")


def test_collect_bad_broker_url(tmp_path):
    result = run_edgekit(
        "collect", "--broker", "http://example:80", "--db", f"sqlite:///{tmp_path / 'x.db'}"
    )
    assert_one_clear_error(result, "broker URL 'http://example:80' must start with mqtt://")


def test_collect_reads_its_settings_from_the_environment(tmp_path):
    env = {**os.environ, "EDGEKIT_BROKER": f"mqtt://127.0.0.1:{free_port()}",
           "EDGEKIT_DB": f"sqlite:///{tmp_path / 'env.db'}"}  # fmt: skip
    result = subprocess.run([EDGEKIT, "collect", "--duration", "1"], capture_output=True,
                            text=True, env=env, timeout=60)  # fmt: skip
    assert_one_clear_error(result, "cannot connect to MQTT broker", env["EDGEKIT_BROKER"])
    assert (tmp_path / "env.db").exists()  # the database of EDGEKIT_DB was opened first
    bad = subprocess.run([EDGEKIT, "collect", "--duration", "1"], capture_output=True, text=True,
                         env={**env, "EDGEKIT_MQTT": "4"}, timeout=60)  # fmt: skip
    assert_one_clear_error(bad, "setting 'mqtt' from EDGEKIT_MQTT", "'4' is not 5 or 3.1.1")


@pytest.mark.parametrize("name", ["broker", "ca_file", "certfile", "keyfile", "mqtt", "prefix"])
def test_daemon_and_collect_share_the_broker_and_tls_options(name):
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    daemon, collect = (
        next(p for p in commands[c].params if p.name == name) for c in ("daemon", "collect")
    )
    assert daemon.opts == collect.opts == ["--" + name.replace("_", "-")]
    assert daemon.help == collect.help
    assert f"[env: EDGEKIT_{name.upper()}]" in daemon.help


def test_collect_share_with_embedded_broker_is_refused(tmp_path):
    result = run_edgekit(
        "collect", "--embedded-broker", "--share", "g", "--db", f"sqlite:///{tmp_path / 'x.db'}"
    )
    assert_one_clear_error(result, "--share")


def _filled_db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    with Store(url) as store:
        for i in range(3):
            store.add_report(make_report("rpi4-01", sequence=i))
        store.add_status("rpi4-01", "online")
    return url


def test_report_every_format(tmp_path):
    url = _filled_db(tmp_path)
    for suffix in ("html", "md", "csv", "json"):
        out = tmp_path / f"fleet.{suffix}"
        result = run_edgekit("report", "--db", url, "--out", out)
        assert result.returncode == 0, result.stderr
        assert f"wrote {out} ({suffix})" in result.stderr
        assert out.stat().st_size > 0
    assert json.loads((tmp_path / "fleet.json").read_text())["totals"]["reports"] == 3
    forced = tmp_path / "fleet.txt"
    result = run_edgekit("report", "--db", url, "--out", forced, "--format", "md")
    assert result.returncode == 0, result.stderr
    assert forced.read_text().startswith("# edgekit fleet report")


def test_report_unwritable_out(tmp_path):
    url = _filled_db(tmp_path)
    result = run_edgekit("report", "--db", url, "--out", tmp_path / "no" / "dir" / "r.html")
    assert_one_clear_error(result, "cannot write report to", "No such file or directory")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = run_edgekit("report", "--db", url, "--out", locked / "r.html")
        if result.returncode == 0:  # running as root: permissions do not stop us
            return
        assert_one_clear_error(result, "cannot write report to")
    finally:
        locked.chmod(0o700)


def test_report_missing_database(tmp_path):
    result = run_edgekit(
        "report", "--db", f"sqlite:///{tmp_path / 'typo.db'}", "--out", tmp_path / "r.html"
    )
    assert_one_clear_error(result, "no SQLite database", "typo.db")
    assert not (tmp_path / "typo.db").exists()
    assert not (tmp_path / "r.html").exists()


def test_report_empty_database_says_so(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(url).close()
    out = tmp_path / "r.md"
    result = run_edgekit("report", "--db", url, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "holds no reports yet" in result.stderr
    assert "No reports yet" in out.read_text()


def test_collect_with_two_worker_processes(collector_mosquitto, tmp_path):
    """--workers 2: two processes in a share group; every report stored exactly once."""
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    proc = subprocess.Popen(
        [EDGEKIT, "collect", "--broker", collector_mosquitto.url, "--db", db, "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        wait_until(
            lambda: any("with 2 processes" in line for line in lines),
            timeout_s=60,
            what="both collector processes subscribed",
        )
        reports = [make_report(f"dev-{i % 20:02d}", sequence=i) for i in range(400)]
        publish_all(collector_mosquitto.port, [report_message(r) for r in reports])
        wait_until(
            lambda: table_rows(db, "SELECT count(*) FROM reports") == [(400,)],
            what="400 reports stored",
        )
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(lines)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "stored 400 reports (0 duplicates dropped)" in stderr
    ids = table_rows(db, "SELECT message_id FROM reports")
    assert sorted(i[0] for i in ids) == sorted(r.message_id for r in reports)


def test_collect_workers_unreachable_broker(tmp_path):
    result = run_edgekit(
        "collect",
        "--workers",
        "2",
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
        "--db",
        f"sqlite:///{tmp_path / 'x.db'}",
        timeout=120,
    )
    assert_one_clear_error(result, "cannot connect to MQTT broker")
