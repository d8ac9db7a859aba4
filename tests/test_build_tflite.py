"""edgekit build against real TensorFlow conversion and the real LiteRT interpreter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edgekit_testing import assert_one_clear_error, run_edgekit

from edgekit.bundle import verify_bundle
from edgekit.converters.pipeline import BuildRequest, build
from edgekit.profiles import load_profile
from edgekit.vocab import BackendName


def _bare_litert_accuracy(model_file: Path, eval_npz: Path) -> float:
    """Top-1 of a .tflite with a plain interpreter loop, independent of edgekit's predictor."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model_file))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    data = np.load(eval_npz)
    hits = 0
    for x, y in zip(data["x"], data["y"], strict=True):
        interp.set_tensor(inp["index"], x[None].astype(np.float32))
        interp.invoke()
        hits += int(np.argmax(interp.get_tensor(out["index"])[0]) == y)
    return 100.0 * hits / len(data["y"])


def test_int8_accuracy_within_budget_and_size_under_30_percent(rpi4_build, fashion_cnn):
    report, out = rpi4_build
    budget = load_profile("rpi4").budgets.max_accuracy_drop_pt
    assert report.status == "ok"
    assert report.primary.accuracy.metric == "top1"
    assert report.primary.accuracy.samples == 2000
    assert report.primary.accuracy.drop_pt <= budget
    # fp32 TFLite agrees with Keras itself on the same data
    assert abs(report.primary.accuracy.fp32 - fashion_cnn.keras_accuracy) < 0.2
    model_bytes = (out / "model.tflite").stat().st_size
    assert model_bytes == report.primary.sizes.model_bytes
    assert model_bytes <= 0.3 * report.primary.sizes.fp32_bytes


def test_reported_accuracy_matches_a_bare_interpreter(rpi4_build, fashion_cnn):
    report, out = rpi4_build
    measured = _bare_litert_accuracy(out / "model.tflite", fashion_cnn.eval)
    assert measured == pytest.approx(report.primary.accuracy.quantized, abs=1e-9)


def test_op_table_and_macs_read_from_the_artifact(rpi4_build):
    report, _ = rpi4_build
    precisions = {(row.op, row.precision) for row in report.primary.ops}
    assert ("CONV_2D", "int8") in precisions
    assert ("FULLY_CONNECTED", "int8") in precisions
    assert report.primary.float_ops == ()
    # small_cnn on 28x28x1: two 3x3 'same' convs (16, 32 filters) with 2x2 pools, dense 64, 10
    expected = 28 * 28 * 16 * 9 + 14 * 14 * 32 * 9 * 16 + 7 * 7 * 32 * 64 + 64 * 10
    assert report.primary.macs == expected
    params = (9 * 16 + 16) + (9 * 16 * 32 + 32) + (7 * 7 * 32 * 64 + 64) + (64 * 10 + 10)
    assert report.primary.params == params
    # The estimate: int8 MACs over the LiteRT figure of rpi4, plus its fixed cost per op.
    litert = load_profile("rpi4").throughput[BackendName.LITERT]
    ops = sum(row.count for row in report.primary.ops)
    assert report.primary.latency.est_runtime == BackendName.LITERT
    assert report.primary.latency.est_target_ms == pytest.approx(
        expected / (litert.int8_gmacs * 1e9) * 1e3 + ops * litert.op_overhead_us / 1e3
    )


def test_manifest_digests_verify_and_tampering_fails(rpi4_build, tmp_path):
    _, out = rpi4_build
    manifest = verify_bundle(out)
    # rpi4 ships its best two candidates by estimate (the board measures both); int8 preferred.
    assert manifest.preferred == "model.tflite"
    shipped = {a.file for a in manifest.artifacts}
    assert "model.tflite" in shipped
    assert len(shipped) == load_profile("rpi4").build.ship_candidates
    assert set(manifest.files) == shipped | {"eval_sample.npz", "build_report.json"}
    ok = run_edgekit("verify", out)
    assert ok.returncode == 0, ok.stderr
    assert f"{len(manifest.files)} files verified" in ok.stdout

    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    model = bytearray((copy / "model.tflite").read_bytes())
    model[len(model) // 2] ^= 0xFF
    (copy / "model.tflite").write_bytes(bytes(model))
    assert_one_clear_error(run_edgekit("verify", copy), "model.tflite does not match its SHA-256")


def test_eval_sample_is_labelled_and_safe_to_load(rpi4_build):
    _, out = rpi4_build
    with np.load(out / "eval_sample.npz", allow_pickle=False) as sample:
        assert sample["x"].shape == (200, 28, 28, 1)
        # Fashion-MNIST pixels / 255: stored as the 8-bit values they are, with their scale.
        assert sample["x"].dtype == np.uint8
        assert sample["y"].shape == (200,)
        assert sample["reference"].shape == (200, 10)


def test_uint8_io_quantization_recorded_in_manifest(coral_build):
    from ai_edge_litert.interpreter import Interpreter

    report, out = coral_build
    assert report.primary.artifact.input_dtype == "uint8"
    manifest = verify_bundle(out)
    art = manifest.artifact()
    interp = Interpreter(model_path=str(out / "model.tflite"))
    scale, zero = interp.get_input_details()[0]["quantization"]
    assert art.inputs[0].dtype == "uint8"
    assert art.inputs[0].quantization.scale == pytest.approx(scale)
    assert art.inputs[0].quantization.zero_point == zero
    oscale, ozero = interp.get_output_details()[0]["quantization"]
    assert art.outputs[0].quantization.scale == pytest.approx(oscale)
    assert art.outputs[0].quantization.zero_point == ozero
    budget = load_profile("coral-edgetpu").budgets.max_accuracy_drop_pt
    assert report.primary.accuracy.drop_pt <= budget


def _profile_with(tmp_path: Path, base: str, **replace: str) -> Path:
    from importlib import resources

    text = resources.files("edgekit.device_profiles").joinpath(f"{base}.toml").read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"{base}-custom.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("scheme", "max_ratio", "min_ratio"),
    [("dynamic", 0.3, 0.2), ("fp16", 0.55, 0.45), ("none", 1.0, 0.99)],
)
def test_other_schemes(fashion_cnn, tmp_path, scheme, max_ratio, min_ratio):
    profile = load_profile(
        _profile_with(tmp_path, "x86-64", **{'quantization = "int8"': f'quantization = "{scheme}"'})
    )
    report = build(
        BuildRequest(
            model=fashion_cnn.model,
            profile=profile,
            out_dir=tmp_path / "b",
            eval_data=fashion_cnn.eval,
            latency_runs=0,
        )
    )
    assert report.primary.artifact.quantization == scheme
    assert min_ratio <= report.primary.sizes.ratio <= max_ratio
    assert report.primary.accuracy.drop_pt <= 1.0
    verify_bundle(tmp_path / "b")


def test_saved_model_and_h5_inputs(fashion_cnn, tmp_path):
    import keras

    model = keras.saving.load_model(fashion_cnn.model)
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    model.save(tmp_path / "legacy.h5")
    for source, kind in ((tmp_path / "sm", "saved_model"), (tmp_path / "legacy.h5", "h5")):
        report = build(
            BuildRequest(
                model=source,
                profile=load_profile("rpi5"),
                out_dir=tmp_path / f"out-{kind}",
                calibration=fashion_cnn.calibration,
                eval_data=fashion_cnn.eval,
                latency_runs=0,
            )
        )
        assert report.model.kind == kind
        assert report.status == "ok"
        assert report.primary.accuracy.drop_pt <= 1.0


@pytest.fixture(scope="module")
def elu_model(tmp_path_factory):
    """A model with ELU, which LiteRT's int8 quantizer silently leaves in float."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="elu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    root = tmp_path_factory.mktemp("elu")
    model.save(root / "elu.keras")
    x = np.random.default_rng(0).random((64, 8, 8, 1), dtype=np.float32)
    np.savez(root / "data.npz", x=x)
    return root


def test_float_fallback_ops_are_named(elu_model, tmp_path):
    # Shipping every candidate, so the int8 one is reported in full whatever the estimates rank
    # first (on a model this small, per-op costs make fp32 the estimate's favourite).
    every = _profile_with(tmp_path, "rpi4", **{"ship_candidates = 2": "ship_candidates = 8"})
    report = build(
        BuildRequest(
            model=elu_model / "elu.keras",
            profile=load_profile(every),
            out_dir=elu_model / "rpi4",
            calibration=elu_model / "data.npz",
            latency_runs=0,
        )
    )
    int8 = next(a for a in report.artifacts if a.artifact.file == "model.tflite")
    assert int8.artifact.quantization == "int8"
    assert int8.float_ops == ("ELU",)
    assert any("ELU" in w for w in int8.warnings)
    assert ("ELU", "float") in {(r.op, r.precision) for r in int8.ops}


def test_int8_only_profile_fails_on_float_ops_with_exit_1(elu_model):
    result = run_edgekit(
        "build", elu_model / "elu.keras", "--profile", "stm32h7",
        "--calibration", elu_model / "data.npz", "--out", elu_model / "mcu", "--json",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "over_budget"
    failed = {c["name"]: c for c in report["artifacts"][0]["checks"] if c["status"] == "fail"}
    assert failed["int8-only ops"]["detail"] == "ELU"
    assert not (elu_model / "mcu").exists()


def test_over_budget_exit_1_and_explicit_override(fashion_cnn, tmp_path):
    tight = _profile_with(tmp_path, "rpi4", **{"max_latency_ms = 50.0": "max_latency_ms = 0.0001"})
    args = ["build", fashion_cnn.model, "--profile", tight, "--out", tmp_path / "b",
            "--calibration", fashion_cnn.calibration, "--eval", fashion_cnn.eval]  # fmt: skip
    over = run_edgekit(*args, "--json")
    assert over.returncode == 1, over.stderr
    report = json.loads(over.stdout)
    assert report["status"] == "over_budget"
    assert report["bundle_dir"] is None
    latency = next(
        c for c in report["artifacts"][0]["checks"] if c["name"] == "latency (estimated)"
    )
    assert latency["status"] == "fail"
    assert latency["value"] > latency["limit"]
    assert "over budget" in over.stderr
    assert not (tmp_path / "b").exists()

    forced = run_edgekit(*args, "--allow-over-budget", "--quiet")
    assert forced.returncode == 0, forced.stderr
    assert "budgets" in forced.stdout  # the readable table
    assert verify_bundle(tmp_path / "b").budget_override is True
