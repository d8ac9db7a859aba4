"""Pruning Keras 3 models (magnitude and structured), composed with int8, on real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edgekit_testing import assert_one_clear_error, run_edgekit

from edgekit.bundle import verify_bundle
from edgekit.converters.pipeline import BuildRequest, build
from edgekit.converters.prune_magnitude import magnitude_mask, polynomial_sparsity
from edgekit.eval_sample import read_inputs
from edgekit.profiles import load_profile
from edgekit.vocab import PruneKind


@pytest.fixture(scope="session")
def fashion_train(tmp_path_factory) -> Path:
    """10,000 labelled Fashion-MNIST training images the model was not trained on."""
    from edgekit.converters.examples import fashion_mnist

    split = fashion_mnist()
    path = tmp_path_factory.mktemp("train") / "train.npz"
    np.savez(path, x=split.x_train[30000:40000], y=split.y_train[30000:40000])
    return path


def _artifact_kernel_sparsity(model_file: Path) -> dict[str, float]:
    """Zero fraction of each conv / fully-connected weight tensor, read with a bare interpreter."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(
        model_path=str(model_file),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    result = {}
    for op in interp._get_ops_details():
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            index = int(op["inputs"][1])
            weights = interp.get_tensor(index)
            assert weights.dtype == np.int8
            result[tensors[index]["name"]] = float(np.mean(weights == 0))
    return result


@pytest.fixture(scope="session")
def magnitude_50(fashion_cnn, fashion_train, tmp_path_factory):
    out = tmp_path_factory.mktemp("magnitude") / "bundle"
    report = build(
        BuildRequest(
            model=fashion_cnn.model,
            profile=load_profile("rpi4"),
            out_dir=out,
            calibration=fashion_cnn.calibration,
            eval_data=fashion_cnn.eval,
            prune=PruneKind.MAGNITUDE,
            sparsity=0.5,
            train_data=fashion_train,
            epochs=2,
            latency_runs=0,
        )
    )
    return report, out


def test_magnitude_50_with_fine_tuning_keeps_top1_within_1pt(magnitude_50, rpi4_build):
    report, _ = magnitude_50
    unpruned_fp32 = rpi4_build[0].primary.accuracy.fp32
    assert report.primary.accuracy.fp32 == pytest.approx(unpruned_fp32)  # same baseline
    assert report.status == "ok"
    # Not more than 1 pt below the unpruned model; fine-tuning on new data may even gain.
    assert report.primary.accuracy.drop_pt <= 1.0  # unpruned fp32 -> pruned int8
    assert report.primary.accuracy.pruned_fp32 >= unpruned_fp32 - 1.0
    assert report.primary.pruning.schedule.startswith("polynomial decay")


def test_int8_artifact_holds_the_zeros(magnitude_50):
    _report, out = magnitude_50
    sparsity = _artifact_kernel_sparsity(out / "model.tflite")
    assert len(sparsity) == 4  # two convs, two dense layers
    for name, zeros in sparsity.items():
        assert zeros >= 0.45, (name, zeros)
    manifest = verify_bundle(out)
    assert manifest.artifact().pruning is not None
    assert manifest.artifact().pruning.kind == "magnitude"
    assert manifest.artifact().pruning.target == 0.5
    assert manifest.artifact().pruning.achieved >= 0.45
    assert set(manifest.artifact().pruning.tensors) == set(sparsity)
    for name, zeros in sparsity.items():
        assert manifest.artifact().pruning.tensors[name] == pytest.approx(zeros)


def test_magnitude_pruning_shrinks_the_gzip_transfer(magnitude_50, rpi4_build):
    report, _ = magnitude_50
    unpruned = rpi4_build[0].primary
    assert report.primary.sizes.model_bytes == pytest.approx(unpruned.sizes.model_bytes, rel=0.02)
    assert report.primary.sizes.gzip_bytes < 0.85 * unpruned.sizes.gzip_bytes
    assert (
        report.primary.pruning.macs_after == report.primary.pruning.macs_before
    )  # dense kernels: same MACs
    assert report.primary.pruning.nonzero_params_after <= 0.55 * report.primary.pruning.params_after


def test_structured_50_halves_macs_converts_and_runs(fashion_cnn, fashion_train, tmp_path):
    out = tmp_path / "bundle"
    report = build(
        BuildRequest(
            model=fashion_cnn.model,
            profile=load_profile("rpi4"),
            out_dir=out,
            calibration=fashion_cnn.calibration,
            eval_data=fashion_cnn.eval,
            prune=PruneKind.STRUCTURED,
            sparsity=0.5,
            train_data=fashion_train,
            epochs=1,
            latency_runs=0,
            allow_over_budget=True,
        )
    )
    p = report.primary.pruning
    assert p.kind == "structured"
    assert 0.15 <= p.macs_after / p.macs_before <= 0.55
    assert p.params_after < 0.5 * p.params_before
    kept = {c.layer: (c.before, c.after) for c in p.channels}
    assert kept["conv2d"] == (16, 8)
    assert kept["conv2d_1"] == (32, 16)
    assert kept["dense_1"][0] == kept["dense_1"][1] == 10  # the output layer stays whole
    assert ("CONV_2D", "int8") in {(r.op, r.precision) for r in report.primary.ops}
    verify_bundle(out)
    # it runs: the bundle's own model on the eval data, with a plain interpreter
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(out / "model.tflite"))
    interp.allocate_tensors()
    x = read_inputs(out / "eval_sample.npz")[0][:1]
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    assert interp.get_tensor(interp.get_output_details()[0]["index"]).shape == (1, 10)
    assert (
        report.primary.accuracy.quantized > 60.0
    )  # a real classifier still (10 classes: chance is 10)


def test_structured_pruning_equals_zeroing_the_removed_channels():
    """Removing channels is exactly the model with those filters zeroed (ReLU(0) = 0)."""
    import keras

    from edgekit.converters.examples import small_cnn
    from edgekit.converters.prune_structured import prune_channels

    keras.utils.set_random_seed(1)
    model = small_cnn((28, 28, 1), 10)
    rng = np.random.default_rng(0)
    model.set_weights(
        [w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()]
    )
    x = rng.random((4, 28, 28, 1), dtype=np.float32)
    small, figures = prune_channels(model, 0.5)
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    for fig in figures:
        if fig.skipped:
            continue
        layer = reference.get_layer(fig.layer)
        kernel, bias = layer.get_weights()
        removed = sorted(set(range(kernel.shape[-1])) - set(fig.kept))
        assert len(removed) == fig.channels_before - fig.channels_after
        kernel[..., removed] = 0
        bias[removed] = 0
        layer.set_weights([kernel, bias])
    np.testing.assert_allclose(small(x), reference(x), rtol=1e-5, atol=1e-5)


def test_mask_and_schedule():
    w = np.random.default_rng(0).normal(size=(3, 3, 8, 16)).astype(np.float32)
    mask = magnitude_mask(w, 0.5)
    assert mask.sum() == w.size // 2
    assert np.abs(w[mask == 0]).max() <= np.abs(w[mask == 1]).min()
    assert polynomial_sparsity(0, 100, 0.8) == 0.0
    assert polynomial_sparsity(100, 100, 0.8) == pytest.approx(0.8)
    assert polynomial_sparsity(50, 100, 0.8) == pytest.approx(0.8 * (1 - 0.5**3))


def test_auto_sparsity_steps_back_to_meet_the_budget(fashion_cnn, tmp_path):
    report = build(
        BuildRequest(
            model=fashion_cnn.model,
            profile=load_profile("rpi4"),
            out_dir=tmp_path / "b",
            calibration=fashion_cnn.calibration,
            eval_data=fashion_cnn.eval,
            prune=PruneKind.MAGNITUDE,
            sparsity=0.95,
            auto_sparsity=True,
            latency_runs=0,
        )
    )
    attempts = report.primary.pruning.attempts
    assert len(attempts) >= 2
    assert attempts[0].sparsity == 0.95
    assert not attempts[0].within_budget
    assert attempts[-1].within_budget
    assert report.primary.pruning.target == attempts[-1].sparsity
    assert report.status == "ok"


def _no_prunable_model(path: Path) -> Path:
    import keras

    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.GlobalAveragePooling2D(), keras.layers.Softmax()]
    )
    model.save(path)
    return path


def test_bad_pruning_input(fashion_cnn, tmp_path):
    common = [
        "--profile",
        "rpi4",
        "--calibration",
        fashion_cnn.calibration,
        "--out",
        tmp_path / "o",
    ]
    for value in ("1.0", "-0.1", "1.5"):
        result = run_edgekit("build", fashion_cnn.model, *common, "--sparsity", value)
        assert_one_clear_error(result, "sparsity must be in [0, 1)")
    unlabelled = tmp_path / "unlabelled.npz"
    np.savez(unlabelled, x=np.zeros((10, 28, 28, 1), np.float32))
    result = run_edgekit(
        "build", fashion_cnn.model, *common, "--prune", "magnitude", "--sparsity", "0.5",
        "--train", unlabelled,
    )  # fmt: skip
    assert_one_clear_error(result, "has no labels y")
    bare = _no_prunable_model(tmp_path / "bare.keras")
    result = run_edgekit("build", bare, *common, "--prune", "magnitude", "--sparsity", "0.5")
    assert_one_clear_error(result, "no prunable layers")
    result = run_edgekit("build", bare, *common, "--prune", "structured", "--sparsity", "0.5")
    assert_one_clear_error(result, "no layer can be pruned structurally")
    assert not (tmp_path / "o").exists()


def test_pruning_over_budget_says_by_how_much(fashion_cnn, tmp_path):
    result = run_edgekit(
        "build", fashion_cnn.model, "--profile", "rpi4", "--calibration", fashion_cnn.calibration,
        "--eval", fashion_cnn.eval, "--prune", "magnitude", "--sparsity", "0.95", "--json",
        "--out", tmp_path / "o",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    drop = next(c for c in report["artifacts"][0]["checks"] if c["name"] == "accuracy drop")
    assert drop["status"] == "fail"
    assert drop["value"] > drop["limit"]
    assert "accuracy drop" in result.stderr
