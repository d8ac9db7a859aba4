"""Drift end to end: a real bundle with its reference, real daemons fed watched inputs over a
real Mosquitto into a real collector, and the fleet report flagging the boards that drift."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from edgekit_testing import EDGEKIT

from edgekit import eval_sample
from edgekit._wait import wait_until
from edgekit.collector import Collector, Store, collector_settings
from edgekit.converters.drift_reference import drift_reference
from edgekit.converters.validate import outputs_of
from edgekit.datasets import LabelledData
from edgekit.drift import merge, summarize
from edgekit.fleet_report import fleet_figures
from edgekit.manifest import Manifest

BACKENDS = {"onnx": "onnxruntime", "tflite": "litert"}
REPORTS = 3


@pytest.fixture(scope="module")
def drift_bundle(jetson_build) -> Path:
    """The jetson-nano bundle as the build wrote it: each artifact carries its drift reference."""
    return jetson_build[1]


def test_the_build_stores_each_artifacts_drift_reference(drift_bundle):
    """Computed from each artifact's outputs on the eval sample as the board decodes it, one
    sample at a time: what a board running it on that sample summarises."""
    manifest = Manifest.model_validate_json((drift_bundle / "manifest.json").read_text())
    with np.load(drift_bundle / "eval_sample.npz") as npz:
        data = LabelledData.of(eval_sample.decode(npz, "x"), npz["y"])
    assert len(manifest.artifacts) == 2  # onnx and tflite
    for art in manifest.artifacts:
        assert art.drift_reference is not None, art.file
        outputs = outputs_of((drift_bundle / art.file).read_bytes(), data,
                             backend=BACKENDS[art.format], batch_size=1)  # fmt: skip
        assert art.drift_reference == drift_reference(data.xs, outputs, specs=art.inputs)
        assert art.drift_reference.samples == len(data)


def _watch_folder(folder: Path, x: np.ndarray) -> Path:
    folder.mkdir()
    np.save(folder / "batch.npy", x.astype(np.float32))
    past = time.time() - 5  # settled: the daemon takes it at its first look
    os.utime(folder / "batch.npy", (past, past))
    return folder


def _daemon(bundle: Path, url: str, device: str, watch: Path, tmp: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [EDGEKIT, "daemon", str(bundle), "--broker", url, "--device-id", device,
         "--outbox", str(tmp / f"{device}.outbox"), "--window", "20", "--interval", "0.3",
         "--reports", str(REPORTS), "--watch", str(watch),
         "--watch-out", str(tmp / f"{device}.out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_shifted_boards_are_flagged_and_the_steady_one_is_not(
    drift_bundle, fashion_cnn, mqtt_broker, tmp_path
):
    held_out = np.load(fashion_cnn.eval)
    x = held_out["x"][1000:1240]
    inputs = {
        "steady": x[:120],  # the same population as the eval sample
        "brighter": np.clip(x[120:] * 0.6 + 0.4, 0.0, 1.0),  # brightness up, contrast down
        "two-classes": held_out["x"][np.isin(held_out["y"], (0, 1))][:60],  # another class mix
    }
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    settings = collector_settings(mqtt_broker.url, client_id="drift-collector")
    with Store(url) as store, Collector(settings, store):
        folders = {device: _watch_folder(tmp_path / device, xs) for device, xs in inputs.items()}
        boards = [
            _daemon(drift_bundle, mqtt_broker.url, device, folder, tmp_path)
            for device, folder in folders.items()
        ]
        for board in boards:
            _, err = board.communicate(timeout=120)
            assert board.returncode == 0, err
        wait_until(
            lambda: len(store.message_ids()) == REPORTS * len(boards),
            timeout_s=30,
            what="every report stored",
        )
        figures = fleet_figures(store.snapshot())

    watched = {d.device_id: d for d in figures.drift if d.source == "watch"}
    assert {d: s.samples for d, s in watched.items()} == {"steady": 120, "brighter": 120,
                                                          "two-classes": 60}  # fmt: skip
    assert {d for d, s in watched.items() if s.flagged} == {"brighter", "two-classes"}
    assert not watched["steady"].flagged, watched["steady"].reason
    assert watched["steady"].psi < watched["steady"].threshold
    assert watched["brighter"].mean_shift > 0.5
    assert watched["two-classes"].psi_classes > watched["two-classes"].threshold
    # On its own eval sample every board says what the build said: no eval-sample drift.
    evals = [d for d in figures.drift if d.source == "eval"]
    assert len(evals) == 3
    assert all(not d.flagged and d.psi < 0.05 for d in evals), [(d.device_id, d.psi) for d in evals]
    assert {d.device_id for d in figures.devices if d.drifting} == {"brighter", "two-classes"}


def test_the_board_and_the_build_summarise_alike(drift_bundle):
    """The reference in the manifest is what a session on the board computes from the same
    samples, and summaries of parts merge into the summary of the whole."""
    from edgekit.runtime.drift import eval_pass
    from edgekit.runtime.session import DeviceSession

    session = DeviceSession.open(drift_bundle)
    accuracy, summary = eval_pass(session)
    assert summary == session.artifact.drift_reference
    assert accuracy == session.accuracy()
    sample = session.eval_sample()
    assert sample is not None
    outputs = session.predict(sample.xs)
    halves = [summarize(sample.xs[0][s], outputs[s]) for s in (slice(0, 50), slice(50, None))]
    whole = merge(halves)
    assert whole.confidence == summary.confidence
    assert whole.classes == summary.classes
    assert whole.channel_mean == pytest.approx(summary.channel_mean)
    assert whole.channel_std == pytest.approx(summary.channel_std)


def test_reports_carry_the_drift_block(drift_bundle, tmp_path):
    result = subprocess.run([EDGEKIT, "run", str(drift_bundle), "--runs", "20", "--json"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    drift = json.loads(result.stdout)["drift"]
    assert drift["eval_sample"]["samples"] == drift["reference"]["samples"]
    assert drift["watched"] is None


def test_summarising_a_sample_of_large_images_costs_no_copy_of_it():
    """A board summarises its eval sample on every window: 64 images of 224x224x3 (37 MiB of
    float32) must not be copied whole (in float64 it would be 74 MiB, twice over for the
    spread), or the board's memory figure grows with the sample. Same figures as NumPy's."""
    import tracemalloc

    x = np.random.default_rng(0).random((64, 224, 224, 3), dtype=np.float32)
    outputs = np.random.default_rng(1).random((64, 10))
    tracemalloc.start()
    try:
        summary = summarize(x, outputs, channel_axis=-1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.25 * x.nbytes, peak
    flat = x.reshape(-1, 3).astype(np.float64)
    assert summary.channel_mean == pytest.approx(flat.mean(axis=0), rel=1e-9)
    assert summary.channel_std == pytest.approx(flat.std(axis=0), rel=1e-9)
