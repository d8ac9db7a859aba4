"""Figures a build prints are true: per-runtime estimates, and an eval sample that fits a board."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.bundle import verify_bundle
from edgekit.converters.pipeline import BuildRequest, build
from edgekit.profiles import load_profile
from edgekit.vocab import BackendName


def _mlp_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((64, 32)).astype(np.float32) / 8
    w2 = rng.standard_normal((32, 10)).astype(np.float32) / 4
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )  # fmt: skip
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_an_onnx_artifact_for_rpi4_is_estimated_with_onnx_runtime_figures(tmp_path):
    model = _mlp_onnx(tmp_path / "mlp.onnx")
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "data.npz", x=rng.standard_normal((64, 64)).astype(np.float32))
    profile = load_profile("rpi4")
    assert profile.runtime.backend == BackendName.LITERT  # the board's usual runtime is LiteRT
    report = build(BuildRequest(model=model, profile=profile, out_dir=tmp_path / "b",
                                calibration=tmp_path / "data.npz", latency_runs=0))  # fmt: skip
    for art in report.artifacts:
        latency = art.latency
        assert latency.est_runtime == BackendName.ONNXRUNTIME
        figures = profile.throughput[BackendName.ONNXRUNTIME]
        assert latency.est_target_ms == pytest.approx(figures.predicted_ms(art.estimate_inputs))
        assert latency.est_target_ms != pytest.approx(
            profile.throughput[BackendName.LITERT].predicted_ms(art.estimate_inputs)
        )
    assert any("skipped tflite" in note for note in report.notes)


@pytest.fixture(scope="module")
def image_model(tmp_path_factory) -> tuple[Path, Path]:
    """A small CNN on 224x224 RGB images, and 240 8-bit images scaled to [0, 1]."""
    import keras

    folder = tmp_path_factory.mktemp("images224")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((224, 224, 3)),
        keras.layers.Conv2D(16, 5, strides=4, activation="relu"),
        keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])  # fmt: skip
    model.save(folder / "cnn224.keras")
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (240, 224, 224, 3), dtype=np.uint8)
    np.savez(folder / "images.npz", x=pixels.astype(np.float32) / 255, y=rng.integers(0, 10, 240))
    return folder / "cnn224.keras", folder / "images.npz"


def _build_224(image_model, out: Path, **options):
    model, data = image_model
    return build(
        BuildRequest(model=model, profile=load_profile("rpi4"), out_dir=out, calibration=data,
                     eval_data=data, latency_runs=0, allow_over_budget=True, **options)
    )  # fmt: skip


def test_a_224_image_models_bundle_fits_the_profiles_flash_budget(image_model, tmp_path):
    report = _build_224(image_model, tmp_path / "bundle")
    sample = report.eval_sample
    assert sample is not None
    assert sample.coding == "uint8"  # 8-bit pixels kept as 8-bit values, with their scale
    largest = max(a.sizes.model_bytes for a in report.artifacts)
    assert sample.bytes <= max(4 * 2**20, largest)
    # 200 random 224x224 RGB images are ~30 MB even as uint8: fewer are kept, and it says so.
    assert sample.samples < sample.requested == 200
    assert f"{sample.samples} of 200 samples" in (sample.note or "")
    manifest = verify_bundle(tmp_path / "bundle")
    total = sum(entry.size for entry in manifest.files.values())
    assert total / 2**20 <= load_profile("rpi4").budgets.max_bundle_mb
    check = next(c for c in report.primary.checks if c.name == "bundle size")
    assert check.status == "pass"
    # The build's figure on the sample is what the board reproduces from the decoded sample.
    from edgekit.runtime.session import DeviceSession

    session = DeviceSession.open(tmp_path / "bundle")
    assert session.accuracy().samples == sample.samples
    assert session.accuracy().value == session.artifact.metrics.eval_sample_value
    assert session.artifact.metrics.sample_accuracy.samples == sample.samples


def test_an_explicit_eval_sample_size_is_taken_as_asked(image_model, tmp_path):
    report = _build_224(image_model, tmp_path / "bundle", eval_sample_size=40)
    assert report.eval_sample.samples == 40
    assert report.eval_sample.note is None


def test_every_accuracy_pair_comes_from_the_same_samples_and_says_how_many(rpi4_build, tmp_path):
    """The build report, `edgekit run --json` and the fleet report each put fp32 beside int8
    measured on the same samples, and say on which and how many."""
    import json
    from datetime import UTC, datetime

    from edgekit_testing import run_edgekit

    from edgekit.collector import Store
    from edgekit.collector.intake import AcceptedReport
    from edgekit.fleet_report import fleet_figures, render
    from edgekit.schema import parse_report
    from edgekit.vocab import ReportFormat

    report, bundle = rpi4_build
    art = report.primary
    # Build report: on all the eval data, both figures from the same samples...
    assert art.accuracy.fp32 is not None
    assert art.accuracy.quantized is not None
    assert art.accuracy.samples == 2000
    assert art.accuracy.data
    # `edgekit run --json` (the board may choose among the bundle's candidates)...
    run = run_edgekit("run", bundle, "--json", "-q", "--runs", "5")
    assert run.returncode == 0, run.stderr
    measured = parse_report(run.stdout.strip().encode())
    # ...and the build's pair on the bundle's eval sample for what ran, which the board
    # reproduces: its build block, beside the board's own figure on the same 200 samples.
    on_sample = verify_bundle(bundle).artifact(measured.artifact).metrics.sample_accuracy
    assert on_sample is not None
    assert on_sample.samples == report.eval_sample.samples == 200
    assert on_sample.fp32 is not None
    assert on_sample.quantized is not None
    assert (measured.build.fp32, measured.build.quantized, measured.build.samples) == (
        on_sample.fp32, on_sample.quantized, on_sample.samples,
    )  # fmt: skip
    assert measured.accuracy.samples == on_sample.samples
    assert measured.accuracy.value == on_sample.quantized
    # Fleet report: the same pair, said to be the eval sample's 200.
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    with Store(url) as store:
        store.add_batch([AcceptedReport(measured, datetime.now(UTC), run.stdout.strip().encode())])
        figures = fleet_figures(store.snapshot())
    data = json.loads(render(figures, ReportFormat.JSON, source=url))
    (row,) = data["bundles"]
    assert (row["fp32"], row["quantized"]) == pytest.approx((on_sample.fp32, on_sample.quantized))
    assert "build, eval sample, 200 samples" in row["build_accuracy_on"]
