"""A source kind added from outside: one module (tests/npz_source.py) and one registry call.

The pipeline is not touched; the new kind builds end to end: bundle written and verified,
accuracy measured at build time and reproduced by the board's session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from npz_source import NpzDenseSource

from edgekit.bundle import verify_bundle
from edgekit.converters import source_registry
from edgekit.converters.pipeline import BuildRequest, build
from edgekit.errors import ConversionError
from edgekit.profiles import load_profile
from edgekit.vocab import ModelFormat, PruneKind


@pytest.fixture
def npz_kind():
    source_registry.register(NpzDenseSource)
    yield NpzDenseSource
    source_registry.unregister(NpzDenseSource)


@pytest.fixture(scope="module")
def dense_weights(tmp_path_factory):
    """A digits MLP trained with scikit-learn, its weights in an .npz, and flat 64-pixel data."""
    from sklearn.neural_network import MLPClassifier

    from edgekit.converters.examples import digits

    split = digits()
    x_train = split.x_train.reshape(len(split.x_train), -1).astype(np.float32)
    x_test = split.x_test.reshape(len(split.x_test), -1).astype(np.float32)
    mlp = MLPClassifier(hidden_layer_sizes=(32,), max_iter=400, random_state=0)
    mlp.fit(x_train, split.y_train)
    root = tmp_path_factory.mktemp("npz-source")
    (w1, w2), (b1, b2) = mlp.coefs_, mlp.intercepts_
    np.savez(root / "dense.npz", w1=w1, b1=b1, w2=w2, b2=b2)
    np.savez(root / "calib.npz", x=x_train[:300])
    np.savez(root / "eval.npz", x=x_test, y=split.y_test)
    sklearn_top1 = 100.0 * float(np.mean(mlp.predict(x_test) == split.y_test))
    return root, sklearn_top1


def _request(root: Path, out: Path, **options) -> BuildRequest:
    return BuildRequest(
        model=root / "dense.npz",
        profile=load_profile("x86-64"),  # lists tflite first: the new kind says it cannot
        out_dir=out,
        calibration=root / "calib.npz",
        eval_data=root / "eval.npz",
        latency_runs=5,
        **options,
    )


def test_the_registered_kind_opens_its_files(npz_kind, dense_weights, tmp_path):
    root, _ = dense_weights
    source = source_registry.open_source(root / "dense.npz", work_dir=tmp_path)
    assert isinstance(source, npz_kind)
    assert [s.shape for s in source.inputs] == [(None, 64)]
    assert source.refusal(ModelFormat.TFLITE) is not None
    assert source.refusal(ModelFormat.ONNX) is None


def test_a_new_source_kind_builds_end_to_end(npz_kind, dense_weights, tmp_path):
    from edgekit.runtime.session import DeviceSession

    root, sklearn_top1 = dense_weights
    report = build(_request(root, tmp_path / "bundle"))
    assert report.status == "ok", [c for a in report.artifacts for c in a.checks]
    assert [a.artifact.format for a in report.artifacts] == ["onnx"]
    budget = load_profile("x86-64").budgets.max_accuracy_drop_pt
    # The int8 candidate was made, measured and judged like any other source's.
    int8 = report.candidate("model.onnx")
    assert int8.quantization == "int8"
    assert int8.accuracy.drop_pt <= budget
    assert int8.host_p50_ms is not None
    # What ships is the fastest candidate measured here (on a model this small, often fp32).
    art = report.primary
    fastest = min((c for c in report.candidates if not c.verdict.startswith("dropped")),
                  key=lambda c: c.host_p50_ms)  # fmt: skip
    assert (
        report.candidate(art.artifact.file).host_p50_ms
        <= fastest.host_p50_ms
        + (fastest.host_p50_ci_ms + report.candidate(art.artifact.file).host_p50_ci_ms)
        + 0.02 * fastest.host_p50_ms
    )
    assert art.macs == 64 * 32 + 32 * 10
    # fp32 is the scikit-learn model itself; what ships stays within the profile's budget
    assert art.accuracy.metric == "top1"
    assert art.accuracy.fp32 == pytest.approx(sklearn_top1, abs=1e-9)
    assert art.accuracy.drop_pt <= budget
    assert art.latency.host_p50_ms is not None
    manifest = verify_bundle(tmp_path / "bundle")
    assert manifest.source_model.name == "dense.npz"
    # The kind is the new source's own: no vocabulary line was added for it.
    assert (manifest.source_model.kind, report.model.kind) == ("npz-dense", "npz-dense")
    assert manifest.artifact().metrics.accuracy == art.accuracy
    session = DeviceSession.open(tmp_path / "bundle")
    assert session.accuracy().value == manifest.artifact().metrics.eval_sample_value


def test_the_new_kind_prunes_through_the_same_pipeline(npz_kind, dense_weights, tmp_path):
    root, _ = dense_weights
    report = build(_request(root, tmp_path / "bundle", prune=PruneKind.MAGNITUDE, sparsity=0.5))
    pruning = report.primary.pruning
    assert pruning is not None
    assert pruning.schedule == "one-shot"
    assert {k.weight for k in pruning.kernels} == {"w1", "w2"}
    assert all(k.achieved >= 0.49 for k in pruning.kernels)


def test_without_the_registry_line_the_file_is_refused(dense_weights, tmp_path):
    root, _ = dense_weights
    with pytest.raises(ConversionError, match=r"unsupported model file .*dense\.npz"):
        build(_request(root, tmp_path / "bundle"))
