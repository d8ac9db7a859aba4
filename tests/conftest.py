"""Shared fixtures: a clean environment, real data, and small models trained on it (cached)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from edgekit_testing import FAULT_FIGURES, REPO

pytest_plugins = ["fixtures_mqtt", "fixtures_collector"]


@pytest.fixture(autouse=True)
def _clean_edgekit_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No EDGEKIT_* setting of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("EDGEKIT_"):
            monkeypatch.delenv(name)
    return


@dataclass(frozen=True)
class TrainedModel:
    """A Keras model file with its calibration and evaluation data on disk."""

    model: Path
    calibration: Path
    eval: Path
    keras_accuracy: float


def _cache_key(*parts: str) -> str:
    import keras
    import tensorflow as tf

    digest = hashlib.sha256((REPO / "converters" / "examples.py").read_bytes())
    for part in (*parts, tf.__version__, keras.__version__):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def fashion_cnn(request: pytest.FixtureRequest) -> TrainedModel:
    """A small CNN trained on Fashion-MNIST (Debian's dataset-fashion-mnist); cached across runs."""
    from edgekit.converters import examples

    cache = request.config.cache.mkdir("edgekit-models") / f"fashion-cnn-{_cache_key('v1')}"
    model_path = cache / "model.keras"
    if not model_path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        split = examples.fashion_mnist()
        model = examples.small_cnn((28, 28, 1), 10)
        examples.train(model, split.x_train[:15000], split.y_train[:15000], epochs=3, seed=0)
        np.savez(
            cache / "calibration.npz", x=split.x_train[20000:20500], y=split.y_train[20000:20500]
        )
        np.savez(cache / "eval.npz", x=split.x_test[:2000], y=split.y_test[:2000])
        acc = examples.accuracy(model, split.x_test[:2000], split.y_test[:2000])
        (cache / "keras_accuracy.txt").write_text(f"{acc}\n")
        model.save(model_path)
    return TrainedModel(
        model=model_path,
        calibration=cache / "calibration.npz",
        eval=cache / "eval.npz",
        keras_accuracy=float((cache / "keras_accuracy.txt").read_text()),
    )


@pytest.fixture(scope="session")
def rpi4_build(fashion_cnn, tmp_path_factory):
    """The Fashion-MNIST CNN built for rpi4 (int8): (build report, bundle directory)."""
    from edgekit.converters.pipeline import BuildRequest, build
    from edgekit.profiles import load_profile

    out = tmp_path_factory.mktemp("rpi4") / "bundle"
    request = BuildRequest(
        model=fashion_cnn.model,
        profile=load_profile("rpi4"),
        out_dir=out,
        calibration=fashion_cnn.calibration,
        eval_data=fashion_cnn.eval,
    )
    return build(request), out


@pytest.fixture(scope="session")
def jetson_build(fashion_cnn, tmp_path_factory):
    """The CNN built for jetson-nano: ONNX (preferred) and TFLite artifacts in one bundle."""
    from edgekit.converters.pipeline import BuildRequest, build
    from edgekit.profiles import load_profile

    out = tmp_path_factory.mktemp("jetson") / "bundle"
    report = build(
        BuildRequest(
            model=fashion_cnn.model,
            profile=load_profile("jetson-nano"),
            out_dir=out,
            calibration=fashion_cnn.calibration,
            eval_data=fashion_cnn.eval,
        )
    )
    return report, out


@pytest.fixture(scope="session")
def coral_build(fashion_cnn, tmp_path_factory):
    """The CNN built for coral-edgetpu: a full-int8 TFLite artifact with uint8 inputs/outputs."""
    from edgekit.converters.pipeline import BuildRequest, build
    from edgekit.profiles import load_profile

    out = tmp_path_factory.mktemp("coral") / "bundle"
    report = build(
        BuildRequest(
            model=fashion_cnn.model,
            profile=load_profile("coral-edgetpu"),
            out_dir=out,
            calibration=fashion_cnn.calibration,
            eval_data=fashion_cnn.eval,
            latency_runs=0,
        )
    )
    return report, out


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the fault scenarios' counts (sent, stored, duplicates, rejected, lost) as a table."""
    rows = config.stash.get(FAULT_FIGURES, [])
    if not rows:
        return
    columns = list(rows[0])
    terminalreporter.section("fault scenarios, counted end to end")
    terminalreporter.write_line("| " + " | ".join(columns) + " |")
    terminalreporter.write_line("|" + "---|" * len(columns))
    for row in rows:
        terminalreporter.write_line("| " + " | ".join(str(row[c]) for c in columns) + " |")
