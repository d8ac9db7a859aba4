"""A bundle with several candidates: the board measures them, runs the fastest within budget,
remembers the choice, and reports every candidate's figures to the collector."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from edgekit_testing import EDGEKIT

from edgekit._wait import wait_until
from edgekit.bundle import write_bundle
from edgekit.manifest import FileEntry, Manifest
from edgekit.schema import parse_report
from edgekit.vocab import SelectionSite


def _slowed(content: bytes, *, width: int = 1536, depth: int = 6) -> bytes:
    """The same model with a dead-weight branch: heavy MatMuls on the input, multiplied by zero
    and added to the output. Same outputs to the bit, several times the work."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_model_from_string(content)
    graph = model.graph
    x, out = graph.input[0].name, graph.output[0].name
    core = f"{out}_core"
    for node in graph.node:
        node.output[:] = [core if o == out else o for o in node.output]
    rng = np.random.default_rng(0)
    features = int(np.prod([d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]]))
    nodes = [helper.make_node("Flatten", [x], ["dead0"], axis=1)]
    size = features
    for i in range(depth):
        weight = (rng.standard_normal((size, width)) / np.sqrt(size)).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(weight, f"dead_w{i}"))
        nodes.append(
            helper.make_node("MatMul", [f"dead{i * 2}", f"dead_w{i}"], [f"dead{i * 2 + 1}"])
        )
        nodes.append(helper.make_node("Tanh", [f"dead{i * 2 + 1}"], [f"dead{i * 2 + 2}"]))
        size = width
    graph.initializer.append(numpy_helper.from_array(np.zeros((1, 1), np.float32), "dead_zero"))
    nodes += [
        helper.make_node("ReduceSum", [f"dead{depth * 2}"], ["dead_sum"], keepdims=1),
        helper.make_node("Mul", ["dead_sum", "dead_zero"], ["dead_nothing"]),
        helper.make_node("Add", [core, "dead_nothing"], [out]),
    ]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def two_candidates(jetson_build, tmp_path_factory) -> Path:
    """The jetson bundle's ONNX artifact as two candidates: as built, and slowed down; the slow
    one is the preferred, so the board must choose to run the other."""
    _, built = jetson_build
    manifest = Manifest.model_validate_json((built / "manifest.json").read_bytes())
    onnx_art = next(a for a in manifest.artifacts if a.format == "onnx")
    fast = (built / onnx_art.file).read_bytes()
    files = {
        "model.fast.onnx": fast,
        "model.slow.onnx": _slowed(fast),
        "eval_sample.npz": (built / "eval_sample.npz").read_bytes(),
    }
    artifacts = (
        onnx_art.model_copy(update={"file": "model.slow.onnx", "variant": "slowed down"}),
        onnx_art.model_copy(update={"file": "model.fast.onnx", "variant": "as built"}),
    )
    two = manifest.model_copy(
        update={
            "artifacts": artifacts,
            "preferred": "model.slow.onnx",
            "selection": SelectionSite.BOARD,
            "files": {name: FileEntry.of_bytes(data) for name, data in files.items()},
            "build_report": None,
        }
    )
    out = tmp_path_factory.mktemp("two") / "bundle"
    write_bundle(out, files, two)
    return out


def _run(bundle: Path, cache: Path, *args: str) -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    result = subprocess.run(
        [EDGEKIT, "run", str(bundle), "--json", "--runs", "20", "--select-seconds", "3", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_run_picks_the_faster_candidate_remembers_it_and_reports_both(two_candidates, tmp_path):
    cache = tmp_path / "cache"
    first = _run(two_candidates, cache)
    chosen = first["selection"]
    assert chosen["chosen"] == "model.fast.onnx" == first["artifact"]
    timed = {c["artifact"]: c for c in chosen["candidates"]}
    assert set(timed) == {"model.fast.onnx", "model.slow.onnx"}
    assert timed["model.slow.onnx"]["p50_ms"] > 1.5 * timed["model.fast.onnx"]["p50_ms"]
    # Same outputs, so the same accuracy on the eval sample, within budget for both.
    assert timed["model.slow.onnx"]["accuracy"] == timed["model.fast.onnx"]["accuracy"]
    assert all(c["within_budget"] for c in timed.values())
    # Remembered for this bundle and host: the second start does not measure again.
    second = _run(two_candidates, cache)
    assert second["selection"] == chosen
    assert len(list((cache / "edgekit" / "selection").iterdir())) == 1
    # --reselect measures again.
    third = _run(two_candidates, cache, "--reselect")
    assert third["selection"]["measured_at"] > chosen["measured_at"]
    assert third["selection"]["chosen"] == "model.fast.onnx"


def test_a_candidate_outside_the_accuracy_budget_is_not_run(two_candidates, tmp_path):
    """Claim a much higher fp32 figure for the fast one: measured here, it then misses the
    budget, so the board runs the slow one, and says why."""
    manifest = Manifest.model_validate_json((two_candidates / "manifest.json").read_bytes())
    fast = manifest.artifact("model.fast.onnx")
    on_sample = fast.metrics.sample_accuracy
    assert on_sample is not None
    inflated = on_sample.model_copy(update={"fp32": on_sample.fp32 + 10.0})
    metrics = fast.metrics.model_copy(update={"sample_accuracy": inflated})
    artifacts = tuple(
        a.model_copy(update={"metrics": metrics}) if a.file == "model.fast.onnx" else a
        for a in manifest.artifacts
    )
    files = {name: two_candidates / name for name in manifest.files}
    out = tmp_path / "claimed"
    write_bundle(out, files, manifest.model_copy(update={"artifacts": artifacts}))
    report = _run(out, tmp_path / "cache")
    assert report["selection"]["chosen"] == "model.slow.onnx"
    fast_result = next(
        c for c in report["selection"]["candidates"] if c["artifact"] == "model.fast.onnx"
    )
    assert not fast_result["within_budget"]
    assert "below fp32" in fast_result["reason"]


def test_the_daemon_chooses_and_the_collector_stores_every_candidates_figures(
    two_candidates, collector_mosquitto, tmp_path
):
    db = tmp_path / "fleet.db"
    collector = subprocess.Popen(
        [EDGEKIT, "collect", "--broker", collector_mosquitto.url, "--db", f"sqlite:///{db}",
         "--client-id", "selection-collector"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def start_daemon(reports: int) -> subprocess.CompletedProcess:
        daemon = subprocess.run(
            [EDGEKIT, "daemon", str(two_candidates), "--broker", collector_mosquitto.url,
             "--device-id", "board-7", "--outbox", str(tmp_path / "outbox"), "--window", "20",
             "--interval", "0.2", "--reports", str(reports), "--select-seconds", "3"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert daemon.returncode == 0, daemon.stderr
        assert "chose model.fast.onnx among the bundle's candidates" in daemon.stderr
        return daemon

    try:
        start_daemon(2)
        # The choice is remembered beside the outbox.
        assert list((tmp_path / "selection").iterdir())

        def stored() -> list[str]:
            import sqlite3

            if not db.exists():
                return []
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                try:
                    return [r[0] for r in conn.execute("SELECT raw_json FROM reports")]
                except sqlite3.OperationalError:
                    return []

        wait_until(lambda: len(stored()) >= 2, timeout_s=30, what="two reports stored")
        start_daemon(1)  # restarted: it takes the remembered choice, without measuring again
        wait_until(lambda: len(stored()) >= 3, timeout_s=30, what="the restart's report stored")
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=30)
    reports = [parse_report(raw.encode()) for raw in stored()]
    assert len(reports) == 3
    # One measurement for all three: the restarted daemon reports the remembered one.
    assert len({r.selection.measured_at for r in reports if r.selection is not None}) == 1
    for report in reports:
        assert report.artifact == "model.fast.onnx"
        assert report.selection is not None
        assert {c.artifact for c in report.selection.candidates} == {
            "model.fast.onnx", "model.slow.onnx",
        }  # fmt: skip
        assert all(c.p50_ms is not None for c in report.selection.candidates)


def test_a_choice_is_remembered_per_set_of_installed_interpreters(monkeypatch):
    """A choice measured with ONNX Runtime installed is not taken where it is not (a board's
    legacy venv), nor after an interpreter upgrade."""
    from edgekit.runtime import selection

    here = selection.host_key()
    monkeypatch.setattr(selection, "installed_interpreters", lambda: ("tflite-runtime 2.14.0",))
    legacy = selection.host_key()
    monkeypatch.setattr(selection, "installed_interpreters", lambda: ("litert 9.9.9",))
    assert len({here, legacy, selection.host_key()}) == 3
