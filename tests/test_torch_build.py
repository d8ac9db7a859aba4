"""PyTorch models in: four families trained here on real data, each built from its ``.pt2`` for
rpi4 (tflite), jetson-nano (onnx and tflite), x86-64 and (the CNNs) stm32h7 (int8-only tflite),
through the same gates as Keras and ONNX models; a fresh ``edgekit[device]`` venv without torch
reproduces each bundle's accuracy exactly."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("litert_torch")

from test_device_venv import wheel  # noqa: F401  (the fixture, shared)
from torch_models import RECIPES, trained

from edgekit.bundle import verify_bundle
from edgekit.converters.pipeline import BuildRequest, build
from edgekit.profiles import load_profile
from edgekit.schema import parse_report

CASES = [(model, profile) for model in RECIPES for profile in ("rpi4", "jetson-nano", "x86-64")]
CASES += [("rescnn", "stm32h7"), ("mobilenetv3", "stm32h7")]
FORMATS = {"rpi4": ["tflite"], "jetson-nano": ["onnx", "tflite"], "x86-64": ["tflite"],
           "stm32h7": ["tflite"]}  # fmt: skip


@pytest.fixture(scope="session")
def torch_cache(request):
    return request.config.cache.mkdir("edgekit-torch-models")


@pytest.fixture(scope="session")
def torch_builds(torch_cache, tmp_path_factory):
    """(report, bundle) per (model, profile), built on first use."""
    made: dict[tuple[str, str], tuple] = {}
    root = tmp_path_factory.mktemp("torch-bundles")

    def get(model: str, profile: str):
        if (model, profile) not in made:
            m = trained(model, torch_cache)
            out = root / f"{model}-{profile}"
            report = build(BuildRequest(model=m.pt2, profile=load_profile(profile), out_dir=out,
                                        calibration=m.calibration, eval_data=m.eval,
                                        latency_runs=5))  # fmt: skip
            made[(model, profile)] = (m, report, out)
        return made[(model, profile)]

    return get


@pytest.mark.slow
@pytest.mark.parametrize(("model", "profile"), CASES)
def test_a_torch_program_builds_within_budget_or_shows_the_fallback(torch_builds, model, profile):
    m, report, bundle = torch_builds(model, profile)
    budget = load_profile(profile).budgets.max_accuracy_drop_pt
    assert report.status == "ok", [(a.artifact.file, a.checks) for a in report.artifacts]
    assert sorted({a.artifact.format for a in report.artifacts}) == sorted(FORMATS[profile])
    for art in report.artifacts:
        acc = art.accuracy
        # fp32 of every format is the torch model itself (to a sample's worth of float noise)
        assert acc.fp32 == pytest.approx(m.torch_accuracy, abs=0.25), art.artifact.file
        assert acc.drop_pt <= budget or art.fallback is not None, (art.artifact.file, acc)
    for fmt in FORMATS[profile]:  # int8 candidates of each format were built and measured
        int8 = [c for c in report.candidates if c.format == fmt and c.quantization == "int8"]
        assert int8, report.candidates
        # within budget, or the fallback kept layers float
        assert any(c.accuracy.drop_pt <= budget or c.kept_float for c in int8), int8
    # Both int8 quantizers are candidates for the measured choice (only AI Edge Quantizer's
    # static recipe where nothing may stay float: PT2E leaves its I/O float)
    tflite = {c.variant for c in report.candidates if c.format == "tflite"}
    expected = {"int8 static (AI Edge Quantizer)"}
    if profile != "stm32h7":
        expected.add("int8 PT2E per-channel (litert-torch)")
    assert expected <= tflite, tflite
    manifest = verify_bundle(bundle)
    assert manifest.source_model.kind == "pytorch"
    for artifact in manifest.artifacts:
        (spec,) = artifact.inputs
        assert spec.layout == "NCHW"
        assert tuple(spec.shape[1:]) == ((1, 28, 28) if model == "rescnn" else (1, 8, 8))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rescnn", "mobilenetv3"])
def test_the_cnns_build_int8_only_for_the_microcontroller(torch_builds, model):
    _, report, bundle = torch_builds(model, "stm32h7")
    for art in report.artifacts:
        assert not [r for r in art.ops if r.precision.startswith("float")], art.ops
        assert any(r.op == "CONV_2D" and r.precision == "int8" for r in art.ops)
    for artifact in verify_bundle(bundle).artifacts:
        assert [s.dtype for s in (*artifact.inputs, *artifact.outputs)] == ["int8", "int8"]


@pytest.fixture(scope="session")
def device_venv(wheel, tmp_path_factory):  # noqa: F811
    """A board's install: edgekit[device] alone (no torch, no TensorFlow) in a fresh venv."""
    venv = tmp_path_factory.mktemp("torch-device") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"edgekit[device] @ {wheel.as_uri()}"],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    found = subprocess.run([str(python), "-c", "import importlib.util as u; print("
                            "[p for p in ('torch', 'tensorflow') if u.find_spec(p)])"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert found.stdout.strip() == "[]"
    return venv


@pytest.mark.slow
@pytest.mark.parametrize(("model", "profile"), CASES)
def test_the_device_runtime_reproduces_each_builds_accuracy(
    torch_builds, device_venv, tmp_path, model, profile
):
    _, _, bundle = torch_builds(model, profile)
    manifest = verify_bundle(bundle)
    for backend in sorted({"litert" if a.format == "tflite" else "onnxruntime"
                           for a in manifest.artifacts}):  # fmt: skip
        run = subprocess.run(
            [str(device_venv / "bin" / "edgekit"), "run", str(bundle), "--json", "-q",
             "--runs", "5", "--backend", backend],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        report = parse_report(run.stdout.strip().encode())
        artifact = manifest.artifact(report.artifact)
        assert report.accuracy.value == artifact.metrics.eval_sample_value, backend
