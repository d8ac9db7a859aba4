"""The command line as a new user meets it: help, typos, refusals, notes, start-up time, setup."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from edgekit_testing import EDGEKIT, REPO, assert_one_clear_error, run_edgekit

from edgekit.cli import COMMANDS

HELP_COMMANDS = [name for name in COMMANDS if name != "profiles"] + ["profiles list",
                                                                       "profiles show"]  # fmt: skip


def _help(command: str) -> str:
    env = {**os.environ, "COLUMNS": "80"}
    result = subprocess.run([EDGEKIT, *command.split(), "--help"], capture_output=True,
                            text=True, env=env, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("args", [["-h"], ["build", "-h"], ["profiles", "-h"],
                                  ["profiles", "show", "-h"], ["report", "-h"]])  # fmt: skip
def test_dash_h_is_help(args):
    result = run_edgekit(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: edgekit")
    assert "Show this message and exit" in result.stdout


@pytest.mark.parametrize("command", HELP_COMMANDS)
def test_help_reads_well_at_80_columns(command):
    text = _help(command)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text  # no option name cut off
    assert "<bool>" not in text  # no placeholder on flags
    assert "\\[" not in text  # help is plain text: no markup escapes shown
    for line in lines:
        assert not re.search(r" \.(\s|$)", line), line  # no stray space before a full stop


def test_build_help_names_every_model_form():
    text = " ".join(_help("build").split())
    assert re.search(r"Usage: edgekit build \[OPTIONS\] \{?MODEL\}? ", text)
    for words in ("ONNX (.onnx)", "SavedModel directory", "Keras (.keras, .h5)", "--force"):
        assert words in text


def test_mistyped_profile_suggests_the_nearest(tmp_path):
    result = run_edgekit("build", tmp_path / "m.keras", "--profile", "rpi44", cwd=tmp_path)
    assert_one_clear_error(result, "unknown profile 'rpi44'", "did you mean 'rpi4'?")
    result = run_edgekit("profiles", "show", "jetson_nano")
    assert_one_clear_error(result, "did you mean 'jetson-nano'?")
    result = run_edgekit("profiles", "show", "zzz")
    assert_one_clear_error(result, "unknown profile 'zzz'", "shipped profiles:")


def _fleet_db(tmp_path: Path) -> str:
    from fleet_fixtures import Board, store_fleet

    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    store_fleet(url, [Board("rpi4-a"), Board("rpi4-b")])
    return url


def test_report_refuses_pdf_and_unknown_suffixes(tmp_path):
    url = _fleet_db(tmp_path)
    result = run_edgekit("report", "--db", url, "--out", tmp_path / "fleet.pdf")
    assert_one_clear_error(result, "does not write PDF", "print it to PDF from a browser")
    result = run_edgekit("report", "--db", url, "--out", tmp_path / "fleet.txt")
    assert_one_clear_error(result, "unknown report format '.txt'")
    assert not (tmp_path / "fleet.pdf").exists()
    assert not (tmp_path / "fleet.txt").exists()
    chosen = run_edgekit("report", "--db", url, "--out", tmp_path / "fleet.txt", "--format", "md")
    assert chosen.returncode == 0, chosen.stderr
    assert (tmp_path / "fleet.txt").read_text().startswith("# edgekit fleet report")


def test_report_prints_a_summary_and_exports_rows(tmp_path):
    url = _fleet_db(tmp_path)
    result = run_edgekit("report", "--db", url, "--rows", tmp_path / "rows.csv")
    assert result.returncode == 0, result.stderr
    assert "best bundle per profile" in result.stdout
    assert "2 boards:" in result.stdout
    rows = (tmp_path / "rows.csv").read_text().splitlines()
    assert len(rows) == 1 + 12
    assert rows[0].startswith("id,message_id,device_id,")
    parquet = run_edgekit("report", "--db", url, "--rows", tmp_path / "rows.parquet")
    try:
        import pyarrow.parquet as pq
    except ImportError:
        assert_one_clear_error(parquet, "pyarrow is not installed", "--rows rows.csv")
    else:
        assert parquet.returncode == 0, parquet.stderr
        assert pq.read_table(tmp_path / "rows.parquet").num_rows == 12
    bad = run_edgekit("report", "--db", url, "--since", "yesterday-ish")
    assert_one_clear_error(bad, "--since 'yesterday-ish'", "24h")
    nobody = run_edgekit("report", "--db", url, "--device", "rpi4-c")
    assert_one_clear_error(nobody, "no reports from that board", "did you mean rpi4-")


def test_db_given_a_file_path_suggests_the_url(tmp_path):
    result = run_edgekit("report", "--db", "fleet.db", cwd=tmp_path)
    assert_one_clear_error(result, "not a database URL: 'fleet.db'", "write sqlite:///fleet.db")


def _images(folder: Path) -> Path:
    """An image folder of 32x32 RGB digits-like pictures (the model takes 28x28 grayscale)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(10):
        (folder / f"class{label}").mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels, "RGB").save(folder / f"class{label}" / f"{i}.png")
    return folder


@pytest.mark.slow
def test_a_bundle_is_replaced_only_with_force_and_image_changes_are_noted(fashion_cnn, tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "manifest.json").write_text("{}")  # a bundle from an earlier build
    (out / "stale.bin").write_bytes(b"old")
    common = ["--profile", "x86-64", "--out", out, "--eval", fashion_cnn.eval, "--quiet"]
    refused = run_edgekit("build", fashion_cnn.model, *common, "--calibration", fashion_cnn.eval)
    assert_one_clear_error(refused, "holds a bundle already", "--force")
    assert (out / "stale.bin").read_bytes() == b"old"
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep")
    result = run_edgekit("build", fashion_cnn.model, "--profile", "x86-64", "--out", foreign,
                         "--force", "--calibration", fashion_cnn.eval)  # fmt: skip
    assert_one_clear_error(result, "is not an edgekit bundle")
    images = _images(tmp_path / "images")
    built = run_edgekit("build", fashion_cnn.model, *common, "--calibration", images, "--force")
    assert built.returncode == 0, built.stderr
    assert not (out / "stale.bin").exists()
    assert run_edgekit("verify", out).returncode == 0
    notes = [line for line in built.stderr.splitlines() if "images resized" in line]
    assert notes == [
        f"note: calibration data {images}: 60 of 60 images resized to 28x28, "
        "60 of 60 converted from RGB to grayscale"
    ]


@pytest.mark.slow
def test_a_second_demo_starts_afresh_and_ends_with_the_summary(tmp_path):
    args = ["demo", "--out", "demo", "--devices", "1", "--reports", "2", "--interval", "0.2",
            "--quiet"]  # fmt: skip
    first = run_edgekit(*args, cwd=tmp_path, timeout=900)
    assert first.returncode == 0, first.stderr
    assert "starting afresh" not in first.stderr
    second = run_edgekit(*args, cwd=tmp_path, timeout=900)
    assert second.returncode == 0, second.stderr
    assert "held an earlier demo: starting afresh" in second.stderr
    with sqlite3.connect(tmp_path / "demo" / "edgekit.db") as db:
        (count,) = db.execute("SELECT count(*) FROM reports").fetchone()
    stored = [int(m[1]) for m in re.finditer(r"the collector stored (\d+) in", second.stderr)]
    assert stored == [count]  # the second run's reports, not both runs'
    assert "best bundle per profile" in second.stdout
    assert "2 boards:" in second.stdout


def test_demo_folder_is_ignored_by_git():
    result = subprocess.run(["git", "check-ignore", "-q", "edgekit-demo/report.html"], cwd=REPO)
    assert result.returncode == 0


def test_help_starts_fast_and_loads_no_command_module():
    code = (
        "import sys, runpy; sys.argv = ['edgekit', '--help']\n"
        "try:\n    runpy.run_module('edgekit', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'numpy', 'sqlalchemy', 'rich', 'typer', 'click') "
        "or m.startswith('edgekit.cli.') and m != 'edgekit.cli.commands' "
        "or m in ('edgekit.manifest', 'edgekit.bundle', 'edgekit.datasets')]\n"
        "print('HEAVY', sorted(heavy))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in loaded.stdout, loaded.stdout + loaded.stderr
    times = []
    for _ in range(7):
        start = time.perf_counter()
        subprocess.run([EDGEKIT, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    # The best of seven: this is a shared 2-core machine, and another process can take a run.
    assert min(times) < 0.3, f"edgekit --help: best {min(times):.3f} s, median " \
        f"{statistics.median(times):.3f} s"  # fmt: skip


def test_the_quick_listing_is_what_typer_would_print(monkeypatch, capsys):
    """``edgekit --help`` is answered without Typer; it must say what Typer says."""
    from edgekit.cli._app import make_app
    from edgekit.cli.commands import top_help

    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        make_app()(["--help"], prog_name="edgekit")
    assert capsys.readouterr().out == top_help()


def test_setup_installs_the_driver_even_when_chromium_is_there(tmp_path):
    """.ci/setup run in a copy of the repository with stand-ins for apt-get and python: with
    chromium present and chromedriver missing, it installs chromium-driver."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "setup", repo / ".ci" / "setup")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    stub = f'#!/bin/sh\necho "$(basename "$0") $*" >> {log}\nexit 0\n'
    for tool in ("chromium", "mosquitto", "apt-get", "sudo", "pg_ctlcluster"):
        (bin_dir / tool).write_text(stub if tool != "sudo" else '#!/bin/sh\nexec "$@"\n')
        (bin_dir / tool).chmod(0o755)
    venv = repo / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text(stub)
    (venv / "python").chmod(0o755)
    # The tools the script needs, and nothing else: chromedriver, which this machine has, is
    # hidden from it, chromium is a stand-in.
    for tool in ("id", "dirname", "basename", "ls", "head", "env", "sh", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    result = subprocess.run(["/bin/bash", str(repo / ".ci" / "setup")], capture_output=True,
                            text=True, env=env, timeout=60)  # fmt: skip
    calls = log.read_text() if log.exists() else ""
    apt = [line for line in calls.splitlines() if line.startswith("apt-get install")]
    assert apt, result.stdout + result.stderr
    assert "chromium-driver" in apt[0].split()
    assert "chromium " not in apt[0] + " "


@pytest.mark.slow
def test_install_raises_no_package_data_warnings(tmp_path):
    """A wheel built from the tracked files: no setuptools warning, every data file inside."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")  # fmt: skip
    src = tmp_path / "src"
    for name in filter(None, files):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps",
                             "--no-build-isolation", "-w", str(tmp_path / "dist")],
                            cwd=src, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "Warning" not in output
    assert "would be ignored" not in output
    import zipfile

    (wheel,) = (tmp_path / "dist").glob("edgekit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in ("edgekit/fleet_report/templates/report.js",
                 "edgekit/fleet_report/templates/report.html.j2",
                 "edgekit/collector/mosquitto/edgekit.conf",
                 "edgekit/device_profiles/rpi4.toml"):  # fmt: skip
        assert data in names
