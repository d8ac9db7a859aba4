"""A board's install: only edgekit[device] (or [device-legacy]) in a fresh venv runs a bundle
built on the workstation, and TensorFlow is neither installed nor imported there."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from edgekit_testing import REPO

from edgekit.bundle import verify_bundle
from edgekit.schema import parse_report

PROBE = """
import importlib.util, json, sys
from edgekit.cli import main
sys.argv = ["edgekit", "run", sys.argv[1], "--json", "--runs", "20", "--quiet"]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in ("tensorflow", "keras", "onnx", "tf2onnx", "sklearn")
               or m.startswith("edgekit.converters"))
installed = [p for p in ("tensorflow", "keras", "onnx", "tf2onnx")
             if importlib.util.find_spec(p) is not None]
import numpy
print(json.dumps({"imported": heavy, "installed": installed, "numpy": numpy.__version__}))
"""


@pytest.fixture(scope="session")
def wheel(tmp_path_factory):
    """edgekit built as a wheel, as it would be shipped to a board."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (path,) = out.glob("edgekit-*.whl")
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "backends", "numpy_major"),
    [("device", ("litert", "onnxruntime"), "2"), ("device-legacy", ("tflite-runtime",), "1")],
)
def test_device_extra_alone_runs_a_bundle(
    wheel, jetson_build, tmp_path, extra, backends, numpy_major
):
    _, bundle = jetson_build
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"edgekit[{extra}] @ {wheel.as_uri()}"],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]

    # the console script, as a user on the board runs it
    cli = subprocess.run([str(venv / "bin" / "edgekit"), "run", str(bundle), "--json", "-q"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    report = parse_report(cli.stdout.strip().encode())
    # The bundle holds candidates of both formats and the board chooses (jetson-nano): what
    # runs is the fastest of those the installed interpreters can run, measured here.
    assert report.backend in backends
    assert report.selection is not None
    assert report.artifact == report.selection.chosen
    eligible = [c for c in report.selection.candidates if c.p50_ms is not None and c.within_budget]
    assert eligible
    assert report.artifact == min(eligible, key=lambda c: c.p50_ms).artifact
    runnable = {"onnx": "onnxruntime" in backends, "tflite": True}
    for candidate in report.selection.candidates:  # what could not run here says why
        fmt = candidate.artifact.rsplit(".", 1)[-1]
        assert (candidate.p50_ms is not None) == runnable[fmt], candidate
        assert candidate.p50_ms is not None or candidate.reason
    artifact = verify_bundle(bundle).artifact(report.artifact)
    assert report.accuracy.value == artifact.metrics.eval_sample_value

    # cwd away from the repository, whose bare edgekit/ folder would shadow the installed package
    probe = subprocess.run([str(python), "-c", PROBE, str(bundle)], capture_output=True,
                           text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    facts = json.loads(probe.stdout.strip().splitlines()[-1])
    assert facts["imported"] == []
    assert facts["installed"] == []
    assert facts["numpy"].startswith(numpy_major + ".")
