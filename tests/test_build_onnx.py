"""The ONNX path: ONNX models in, QDQ int8 ONNX out; Keras -> ONNX; accuracy-aware fallback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edgekit_testing import assert_one_clear_error, run_edgekit

from edgekit.bundle import verify_bundle
from edgekit.converters.pipeline import BuildRequest, build
from edgekit.profiles import load_profile
from edgekit.vocab import PruneKind


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """scikit-learn's digits: (x_train, y_train, x_test, y_test), x as 8x8 images in [0, 1]."""
    from edgekit.converters.examples import digits as load_digits

    split = load_digits()
    return split.x_train, split.y_train, split.x_test, split.y_test


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _onnx_build(model: Path, tmp: Path, profile: str = "x86-64", **options):
    return build(
        BuildRequest(model=model, profile=load_profile(profile), out_dir=tmp / "bundle",
                     latency_runs=0, **options)
    )  # fmt: skip


# --- Keras CNN -> ONNX (and TFLite) in one bundle -------------------------------------------


def test_keras_cnn_to_onnx_int8_within_budget(jetson_build):
    report, _ = jetson_build
    onnx = report.artifact("onnx")
    assert onnx.artifact.quantization == "int8"
    assert onnx.artifact.calibration_method == "minmax"
    assert onnx.accuracy.metric == "top1"
    assert onnx.accuracy.drop_pt <= load_profile("jetson-nano").budgets.max_accuracy_drop_pt
    assert ("Conv", "int8") in {(r.op, r.precision) for r in onnx.ops}
    assert ("Gemm", "int8") in {(r.op, r.precision) for r in onnx.ops}
    assert onnx.sizes.ratio <= 0.3
    # the same model through LiteRT: same MACs, both in one bundle
    assert report.artifact("tflite").macs == onnx.macs


def test_both_formats_in_one_bundle_onnx_preferred(jetson_build):
    report, out = jetson_build
    manifest = verify_bundle(out)
    # One artifact per format (jetson-nano ships both), the ONNX one preferred; which quantizer
    # variant of each ships is the measured choice's business.
    assert sorted(a.format for a in manifest.artifacts) == ["onnx", "tflite"]
    assert manifest.preferred == report.preferred == report.artifact("onnx").artifact.file
    onnx = manifest.artifact()
    assert onnx.format == "onnx"
    # the manifest holds the build report's own figures
    assert onnx.metrics.accuracy == report.artifact("onnx").accuracy
    assert onnx.metrics.sizes == report.artifact("onnx").sizes
    assert onnx.metrics.latency == report.artifact("onnx").latency


def test_onnx_artifact_runs_in_onnx_runtime_with_the_reported_accuracy(jetson_build, fashion_cnn):
    import onnxruntime as ort

    report, out = jetson_build
    shipped = out / report.artifact("onnx").artifact.file
    session = ort.InferenceSession(str(shipped), providers=["CPUExecutionProvider"])
    data = np.load(fashion_cnn.eval)
    logits = session.run(None, {session.get_inputs()[0].name: data["x"]})[0]
    measured = 100.0 * float(np.mean(logits.argmax(axis=1) == data["y"]))
    assert measured == pytest.approx(report.artifact("onnx").accuracy.quantized, abs=1e-6)


# --- ONNX models built in the test ------------------------------------------------------------


def _mlp_onnx(digits, path: Path, *, opset: int, constant_weight: bool) -> Path:
    """A digits MLP trained with scikit-learn, written as an ONNX graph by hand."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.neural_network import MLPClassifier

    x_train, y_train, _, _ = digits
    mlp = MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=0)
    mlp.fit(x_train.reshape(len(x_train), -1), y_train)
    w1, w2 = (w.astype(np.float32) for w in mlp.coefs_)
    b1, b2 = (b.astype(np.float32) for b in mlp.intercepts_)
    nodes = []
    initializers = [numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2"),
                    numpy_helper.from_array(b2, "b2")]  # fmt: skip
    if constant_weight:
        nodes.append(helper.make_node("Constant", [], ["w1"], value=numpy_helper.from_array(w1)))
    else:
        initializers.append(numpy_helper.from_array(w1, "w1"))
    nodes += [
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w1"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1_bias"),
        helper.make_node("Relu", ["h1"], ["h"], name="relu"),
        helper.make_node("MatMul", ["h", "w2"], ["l0"], name="fc2"),
        helper.make_node("Add", ["l0", "b2"], ["logits"], name="fc2_bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 8, 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="session")
def digits_data(digits, tmp_path_factory):
    x_train, y_train, x_test, y_test = digits
    root = tmp_path_factory.mktemp("digits-data")
    return (_npz(root / "calib.npz", x=x_train[:300], y=y_train[:300]),
            _npz(root / "eval.npz", x=x_test, y=y_test))  # fmt: skip


@pytest.mark.parametrize(("opset", "constant_weight"), [(13, True), (11, False), (17, True)])
def test_hand_built_onnx_models_build(digits, digits_data, tmp_path, opset, constant_weight):
    model = _mlp_onnx(digits, tmp_path / "mlp.onnx", opset=opset, constant_weight=constant_weight)
    calib, evaluation = digits_data
    report = _onnx_build(model, tmp_path, calibration=calib, eval_data=evaluation)
    art = report.primary
    assert art.artifact.format == "onnx"
    assert report.status == "ok"
    assert art.accuracy.drop_pt <= 1.0
    assert art.accuracy.quantized > 90.0
    # ONNX Runtime's pre-processing fuses MatMul + Add into Gemm
    assert {("Gemm", "int8")} <= {(r.op, r.precision) for r in art.ops}
    assert art.macs == 64 * 64 + 64 * 10
    if opset < 13:
        assert any("opset 11 upgraded to 13" in n for n in report.notes)
    verify_bundle(tmp_path / "bundle")


def _keras_to_onnx(model, path: Path, example: np.ndarray) -> Path:
    model(example)
    model.export(str(path), format="onnx", verbose=False)
    return path


def test_dynamic_spatial_axes_are_fixed_from_the_data(digits, digits_data, tmp_path):
    import keras
    import onnx

    from edgekit.converters.training import fit

    x_train, y_train, *_ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((None, None, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])  # fmt: skip
    fit(model, x_train, y_train, epochs=20)
    path = _keras_to_onnx(model, tmp_path / "dyn.onnx", x_train[:1])
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert not dims[1].HasField("dim_value")  # really dynamic height
    calib, evaluation = digits_data
    report = _onnx_build(path, tmp_path, calibration=calib, eval_data=evaluation)
    assert any("axis 1 fixed to 8" in n for n in report.notes)
    assert report.primary.accuracy.drop_pt <= 1.0
    assert report.primary.macs == 6 * 6 * 16 * 9 + 16 * 10


def test_int64_token_input_builds(digits, tmp_path):
    """Pixels as a sequence of 64 grey-level tokens: Embedding -> mean -> Dense, int64 ids."""
    import keras

    from edgekit.converters.training import fit

    x_train, y_train, x_test, y_test = digits
    tokens_train = np.rint(x_train.reshape(len(x_train), 64) * 16).astype(np.int64)
    tokens_test = np.rint(x_test.reshape(len(x_test), 64) * 16).astype(np.int64)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,), dtype="int64", name="tokens")
    h = keras.layers.Embedding(17, 16)(inputs)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(10)(h)
    model = keras.Model(inputs, outputs)
    fit(model, tokens_train, y_train, epochs=15)
    path = _keras_to_onnx(model, tmp_path / "tokens.onnx", tokens_train[:1])
    calib = _npz(tmp_path / "calib.npz", x=tokens_train[:300])
    evaluation = _npz(tmp_path / "eval.npz", x=tokens_test, y=y_test)
    report = _onnx_build(path, tmp_path, calibration=calib, eval_data=evaluation)
    art = report.primary
    assert art.artifact.input_dtype == "int64"
    assert art.accuracy.quantized > 80.0
    assert report.status == "ok", [c for c in art.checks if c.status == "fail"]
    with np.load(tmp_path / "bundle" / "eval_sample.npz") as sample:
        assert sample["x"].dtype == np.int64


# --- accuracy-aware fallback -------------------------------------------------------------------


@pytest.fixture(scope="session")
def outlier_model(fashion_cnn, tmp_path_factory):
    """The Fashion CNN plus an 11th logit fixed at -1000: identical predictions in float, but the
    output's int8 range is so wide that the real logits fall on a few quantization steps."""
    import keras

    base = keras.saving.load_model(fashion_cnn.model)
    inputs = keras.Input((28, 28, 1))
    h = inputs
    for layer in base.layers[:-1]:
        h = layer(h)
    kernel, bias = base.layers[-1].get_weights()
    head = keras.layers.Dense(11, name="logits_with_outlier")
    outputs = head(h)
    head.set_weights([
        np.concatenate([kernel, np.zeros((kernel.shape[0], 1), np.float32)], axis=1),
        np.concatenate([bias, [-1000.0]]).astype(np.float32),
    ])  # fmt: skip
    path = tmp_path_factory.mktemp("outlier") / "outlier.keras"
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.mark.parametrize("profile", ["rpi4", "jetson-nano"])
def test_fallback_keeps_the_costly_layer_float_and_meets_the_budget(
    outlier_model, fashion_cnn, tmp_path, profile
):
    report = build(
        BuildRequest(
            model=outlier_model,
            profile=load_profile(profile),
            out_dir=tmp_path / "bundle",
            calibration=fashion_cnn.calibration,
            eval_data=fashion_cnn.eval,
            latency_runs=0,
        )
    )
    budget = load_profile(profile).budgets.max_accuracy_drop_pt
    # The profile's own int8 scheme falls back; other candidates (dynamic-range keeps
    # activations float) may ship beside it within budget.
    int8 = [a for a in report.artifacts if a.artifact.quantization == "int8"]
    assert {a.artifact.format for a in int8} == {a.artifact.format for a in report.artifacts}
    for art in int8:
        fb = art.fallback
        assert fb is not None, art.artifact.file
        assert fb.plain_int8_drop_pt > budget  # plain int8 really misses it
        assert fb.met_budget
        assert 1 <= len(fb.kept_float) <= 3
        assert art.accuracy.drop_pt <= budget
        assert "float" in {r.precision for r in art.ops}
    assert report.status == "ok"
    manifest = verify_bundle(tmp_path / "bundle")
    assert manifest.artifact().kept_float == report.primary.fallback.kept_float


def test_fallback_can_be_turned_off(outlier_model, fashion_cnn, tmp_path):
    result = run_edgekit(
        "build", outlier_model, "--profile", "rpi4", "--calibration", fashion_cnn.calibration,
        "--eval", fashion_cnn.eval, "--no-fallback", "--json", "--out", tmp_path / "b",
    )  # fmt: skip
    report = json.loads(result.stdout)
    # No layer is kept float: the plain int8 artifact misses the budget and is dropped for it;
    # what ships instead (dynamic-range or fp32) is within budget, or the build fails.
    assert all(a["fallback"] is None for a in report["artifacts"])
    int8 = next(c for c in report["candidates"] if c["file"] == "model.tflite")
    assert int8["verdict"].startswith("dropped: accuracy drop"), int8["verdict"]
    assert not int8["shipped"]
    if result.returncode == 0:
        assert all(a["accuracy"]["drop_pt"] <= 1.0 for a in report["artifacts"])
    else:
        assert result.returncode == 1, result.stderr


# --- ONNX magnitude pruning (issue 3) -----------------------------------------------------------


def test_onnx_one_shot_magnitude_pruning(digits, digits_data, tmp_path):
    import onnx
    from onnx import numpy_helper

    model = _mlp_onnx(digits, tmp_path / "mlp.onnx", opset=13, constant_weight=True)
    calib, evaluation = digits_data
    report = _onnx_build(model, tmp_path, calibration=calib, eval_data=evaluation,
                         prune=PruneKind.MAGNITUDE, sparsity=0.5)  # fmt: skip
    art = report.primary
    assert art.pruning.kind == "magnitude"
    assert art.pruning.schedule == "one-shot"
    assert art.accuracy.drop_pt <= 1.0
    shipped = onnx.load(tmp_path / "bundle" / art.artifact.file)
    # Both MatMul weights (the Constant-node one included) hold the zeros in whatever precision
    # the measured choice shipped them: int8, or float where a candidate keeps a layer float.
    tensors = list(shipped.graph.initializer) + [
        a.t for n in shipped.graph.node if n.op_type == "Constant" for a in n.attribute
    ]
    weights = {
        tuple(w.shape): w
        for w in map(numpy_helper.to_array, tensors)
        if w.ndim == 2 and w.dtype in (np.int8, np.float32)
    }
    assert sorted(weights) == [(64, 10), (64, 64)], sorted(weights)
    for w in weights.values():
        assert np.mean(w == 0) >= 0.45


# --- bad input -----------------------------------------------------------------------------------


def test_truncated_onnx(digits, digits_data, tmp_path):
    good = _mlp_onnx(digits, tmp_path / "mlp.onnx", opset=13, constant_weight=False)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    result = run_edgekit(
        "build",
        cut,
        "--profile",
        "x86-64",
        "--calibration",
        digits_data[0],
        "--out",
        tmp_path / "o",
    )
    assert_one_clear_error(result, "cut.onnx")


def test_dangling_node(digits_data, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["nowhere"], ["y"], name="dangling_relu")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "dangling.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    result = run_edgekit(
        "build",
        path,
        "--profile",
        "x86-64",
        "--calibration",
        digits_data[0],
        "--out",
        tmp_path / "o",
    )
    assert_one_clear_error(result, "invalid ONNX model", "nowhere")


def test_unsupported_opset(digits_data, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "old.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)]), path)
    result = run_edgekit(
        "build",
        path,
        "--profile",
        "x86-64",
        "--calibration",
        digits_data[0],
        "--out",
        tmp_path / "o",
    )
    assert_one_clear_error(result, "opset 9 is not supported")


def test_onnx_model_for_a_tflite_only_profile(digits, digits_data, tmp_path):
    model = _mlp_onnx(digits, tmp_path / "mlp.onnx", opset=13, constant_weight=False)
    result = run_edgekit(
        "build", model, "--profile", "coral-edgetpu", "--calibration", digits_data[0],
        "--out", tmp_path / "o",
    )  # fmt: skip
    # and says how a PyTorch user gets a tflite instead
    assert_one_clear_error(result, "can only become onnx", "pass the torch.export program (.pt2")


def test_a_model_with_two_inputs_builds_to_onnx_and_runs(digits, tmp_path):
    """Image plus per-quadrant ink figures: two inputs; the profile's tflite cannot take it, so
    the onnx it also lists is built, and the board feeds both inputs from the eval sample."""
    import keras

    from edgekit.converters.training import fit
    from edgekit.runtime.session import DeviceSession

    x_train, y_train, x_test, y_test = digits

    def quadrants(x):
        corners = [x[:, r : r + 4, c : c + 4] for r in (0, 4) for c in (0, 4)]
        return np.stack([q.mean(axis=(1, 2, 3)) for q in corners], axis=1)

    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 1), name="image")
    ink = keras.Input((4,), name="ink")
    h = keras.layers.Conv2D(8, 3, activation="relu")(image)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Concatenate()([h, ink])
    model = keras.Model([image, ink], keras.layers.Dense(10)(h))
    fit(model, [x_train, quadrants(x_train)], y_train, epochs=15)
    path = tmp_path / "two.keras"
    model.save(path)
    calib = _npz(tmp_path / "calib.npz", image=x_train[:300], ink=quadrants(x_train[:300]))
    evaluation = _npz(tmp_path / "eval.npz", image=x_test, ink=quadrants(x_test), y=y_test)
    report = _onnx_build(path, tmp_path, calibration=calib, eval_data=evaluation)
    assert [a.artifact.format for a in report.artifacts] == ["onnx"]
    assert report.primary.accuracy.drop_pt <= 1.0
    session = DeviceSession.open(tmp_path / "bundle")
    assert len(session.inputs) == 2
    assert session.accuracy().value == session.artifact.metrics.eval_sample_value
