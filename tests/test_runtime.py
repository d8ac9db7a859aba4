"""The device runtime: bundles verified then run on LiteRT and ONNX Runtime, float in/out."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from edgekit_testing import assert_one_clear_error, run_edgekit

from edgekit.errors import BundleIntegrityError, RuntimeBackendError
from edgekit.eval_sample import read_inputs
from edgekit.manifest import QuantParams, TensorSpec
from edgekit.runtime.quantization import to_float, to_model_dtype
from edgekit.runtime.session import DeviceSession
from edgekit.schema import parse_report


@pytest.mark.parametrize("backend", ["litert", "onnxruntime"])
def test_each_backend_reproduces_the_build_figure(jetson_build, backend):
    report, bundle = jetson_build
    session = DeviceSession.open(bundle, backend=backend)
    fmt = "tflite" if backend == "litert" else "onnx"
    assert session.artifact.format == fmt
    accuracy = session.accuracy()
    assert accuracy.metric == "top1"
    assert accuracy.samples == 200
    # exactly what the build measured on the same 200 samples with the same interpreter
    assert accuracy.value == session.artifact.metrics.eval_sample_value
    # and close to the build report's figure on all 2,000 eval images
    assert accuracy.value == pytest.approx(report.artifact(fmt).accuracy.quantized, abs=5.0)


def test_default_backend_follows_the_preferred_artifact(jetson_build):
    report, bundle = jetson_build
    session = DeviceSession.open(bundle)
    assert session.artifact.file == report.preferred
    assert session.artifact.format == "onnx"
    assert session.backend.name == "onnxruntime"


def test_predict_takes_floats_and_matches_a_bare_interpreter(coral_build):
    """uint8 in/out: the session quantizes with the manifest's scale and zero point."""
    from ai_edge_litert.interpreter import Interpreter

    _, bundle = coral_build
    session = DeviceSession.open(bundle, backend="litert")
    x = read_inputs(bundle / "eval_sample.npz")[0][:8]
    ours = session.predict(x)
    interp = Interpreter(model_path=str(bundle / "model.tflite"))
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    (s_in, z_in), (s_out, z_out) = inp["quantization"], out["quantization"]
    expected = []
    for one in x:
        q = np.clip(np.round(one[None] / np.float32(s_in)) + z_in, 0, 255).astype(np.uint8)
        interp.resize_tensor_input(inp["index"], q.shape)
        interp.allocate_tensors()
        interp.set_tensor(inp["index"], q)
        interp.invoke()
        raw = interp.get_tensor(out["index"]).astype(np.float32)
        expected.append((raw - np.float32(z_out)) * np.float32(s_out))
    np.testing.assert_array_equal(ours, np.concatenate(expected))


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_quantization_is_exact_at_every_code(dtype):
    info = np.iinfo(dtype)
    spec = TensorSpec(
        name="t", shape=(None, 4), dtype=dtype,
        quantization=QuantParams(scale=0.0421875, zero_point=-3 if dtype == "int8" else 130),
    )  # fmt: skip
    codes = np.arange(info.min, info.max + 1).astype(dtype)
    real = to_float(codes, spec)
    np.testing.assert_array_equal(
        real,
        (codes.astype(np.float32) + np.float32(3 if dtype == "int8" else -130))
        * np.float32(0.0421875),
    )
    np.testing.assert_array_equal(to_model_dtype(real, spec), codes)  # round trip, every code
    clipped = to_model_dtype(np.array([-1e6, 1e6], np.float32), spec)
    np.testing.assert_array_equal(clipped, [info.min, info.max])


def test_tampered_bundle_is_refused(jetson_build, tmp_path):
    report, bundle = jetson_build
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    name = report.preferred
    data = bytearray((copy / name).read_bytes())
    data[100] ^= 0x01
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match=f"{re.escape(name)} does not match"):
        DeviceSession.open(copy)
    assert_one_clear_error(run_edgekit("run", copy), f"{name} does not match its SHA-256")


def test_unavailable_backend_is_a_clear_error(jetson_build, coral_build):
    _, bundle = coral_build
    with pytest.raises(RuntimeBackendError, match="holds only tflite"):
        DeviceSession.open(bundle, backend="onnxruntime")
    result = run_edgekit("run", bundle, "--backend", "nonesuch")
    assert_one_clear_error(result, "unknown backend 'nonesuch'")


def test_cli_run_json_is_a_wire_report(jetson_build):
    report, bundle = jetson_build
    result = run_edgekit("run", bundle, "--runs", "30", "--warmup", "3", "--json",
                         "--device-id", "bench-01", "--backend", "litert")  # fmt: skip
    assert result.returncode == 0, result.stderr
    wire = parse_report(result.stdout.strip().encode())
    assert wire.device_id == "bench-01"
    assert wire.backend == "litert"
    assert wire.latency.count == 30
    assert wire.latency.init_ms > 0
    assert wire.latency.first_ms > 0
    assert wire.latency.p50_ms <= wire.latency.p99_ms <= wire.latency.max_ms
    assert wire.accuracy.value == DeviceSession.open(bundle, backend="litert").accuracy().value
    assert wire.peak_rss_mb > 10
    assert wire.build.est_latency_ms == pytest.approx(
        report.artifact("tflite").latency.est_target_ms
    )
    assert json.loads(result.stdout)["schema"] == "edgekit.report/1"


def test_cli_run_table(jetson_build):
    _, bundle = jetson_build
    result = run_edgekit("run", bundle, "--runs", "20", "--quiet", "--backend", "onnxruntime")
    assert result.returncode == 0, result.stderr
    for words in ("p50", "p99", "top1 on eval sample", "peak RSS", "onnxruntime"):
        assert words in result.stdout


def test_identical_outputs_give_a_finite_sqnr_a_report_can_carry():
    from edgekit import metrics

    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    assert metrics.sqnr_db(x, x) == metrics.SQNR_CAP_DB


def test_a_crafted_npy_in_the_watched_folder_is_an_error_result_not_a_crash(jetson_build, tmp_path):
    from edgekit.runtime.watch import WatchedFolder

    _, bundle = jetson_build
    inbox = tmp_path / "in"
    inbox.mkdir()
    good = read_inputs(bundle / "eval_sample.npz")[0][0]
    np.save(inbox / "good.npy", good)
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }"
    header += b" " * (118 - len(header)) + b"\n"
    (inbox / "huge.npy").write_bytes(
        b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    )
    watched = WatchedFolder(inbox, DeviceSession.open(bundle), settle_s=0)
    latencies = watched.poll()
    assert len(latencies) == 1
    assert (watched.processed, watched.failed) == (1, 1)
    assert "error" in json.loads((inbox / "huge.npy.result.json").read_text())
