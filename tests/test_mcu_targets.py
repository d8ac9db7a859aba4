"""Accelerator targets' own compilers: Arm's Vela for an Ethos-U55 profile, the Edge TPU compiler
for coral (absent here: the build says so; a stand-in on PATH shows it is run when found)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
from edgekit_testing import EDGEKIT, assert_one_clear_error, run_edgekit
from mcu_models import digits_cnn, gelu_cnn, profile_with

from edgekit.bundle import verify_bundle
from edgekit.converters.pipeline import BuildRequest, build
from edgekit.profiles import load_profile


@pytest.fixture(scope="module")
def ethos_fashion(fashion_cnn, tmp_path_factory):
    """The Fashion-MNIST CNN built for ethos-u55 with the CLI: (result, bundle directory)."""
    out = tmp_path_factory.mktemp("ethos") / "bundle"
    result = run_edgekit("build", fashion_cnn.model, "--profile", "ethos-u55", "--calibration",
                         fashion_cnn.calibration, "--eval", fashion_cnn.eval, "--out", out,
                         "-q")  # fmt: skip
    return result, out


def test_a_cnn_built_for_ethos_u55_carries_velas_report(ethos_fashion, tmp_path):
    result, bundle = ethos_fashion
    assert result.returncode == 0, result.stderr[-2000:]
    art = json.loads((bundle / "build_report.json").read_text())["artifacts"][0]
    vela = art["target"]["vela"]
    assert vela["accelerator"] == "ethos-u55-128"
    assert (vela["system_config"], vela["memory_mode"]) == ("Ethos_U55_High_End_Embedded",
                                                            "Shared_Sram")  # fmt: skip
    # Every conv, pool and dense layer of the CNN on the NPU, nothing left to the Cortex-M
    assert sorted(vela["npu_ops"]).count("Conv2D") == 2
    assert vela["npu_ops"].count("FullyConnected") == 2
    assert vela["cpu_ops"] == []
    assert vela["cycles"] > vela["npu_cycles"] > 0
    assert vela["vela_ms"] == pytest.approx(vela["cycles"] / vela["clock_hz"] * 1e3)
    assert vela["edgekit_est_ms"] == art["latency"]["est_target_ms"]  # side by side
    assert "internal compiler estimate" in vela["estimate_note"]
    checks = {c["name"]: c for c in art["checks"]}
    assert checks["SRAM (Vela)"]["value"] == pytest.approx(vela["sram_bytes"] / 1024)
    assert checks["flash (Vela)"]["value"] == pytest.approx(vela["flash_bytes"] / 2**20)
    assert {checks[n]["status"] for n in ("SRAM (Vela)", "flash (Vela)")} == {"pass"}
    assert art["target"]["tflm"]["missing_ops"] == []  # it also runs in TFLM alone
    for shown in ("Vela, ethos-u55-128", "ops on the NPU", "7: Conv2D x2", "experimental"):
        assert shown in result.stdout, shown
    # Vela itself, run here on the bundle's artifact, reports the same SRAM and flash.
    subprocess.run([sys.executable, "-m", "ethosu.vela", str(bundle / "model.tflite"),
                    "--accelerator-config", "ethos-u55-128", "--config", "Arm/vela.ini",
                    "--system-config", "Ethos_U55_High_End_Embedded", "--memory-mode",
                    "Shared_Sram", "--output-dir", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    with (tmp_path / "model_summary_Ethos_U55_High_End_Embedded.csv").open() as handle:
        summary = next(csv.DictReader(handle))
    assert vela["sram_bytes"] == round(float(summary["sram_memory_used"]) * 1024)
    assert vela["flash_bytes"] == round(float(summary["off_chip_flash_memory_used"]) * 1024)


def test_an_op_tflm_lacks_passes_where_vela_runs_it_on_the_npu(tmp_path):
    gelu = gelu_cnn(tmp_path / "gelu")
    report = build(BuildRequest(model=gelu.model, profile=load_profile("ethos-u55"),
                                out_dir=tmp_path / "b", calibration=gelu.calibration,
                                eval_data=gelu.eval, latency_runs=0))  # fmt: skip
    target = report.primary.target
    assert target.tflm.missing_ops == ("GELU",)
    assert "Gelu" in target.vela.npu_ops
    ops = next(c for c in report.primary.checks if c.name == "ops in TFLite Micro")
    assert (ops.status, ops.value) == ("pass", 0.0)
    assert ops.detail.endswith("on the NPU (Vela): GELU")
    assert report.status == "ok"


def test_missing_vela_is_one_clear_line(fashion_cnn, tmp_path):
    shadow = tmp_path / "shadow" / "ethosu"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("hidden by the test")\n')
    env = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    result = subprocess.run([EDGEKIT, "build", str(fashion_cnn.model), "--profile", "ethos-u55",
                             "--calibration", str(fashion_cnn.calibration), "--out",
                             str(tmp_path / "b")], capture_output=True, text=True, env=env,
                            timeout=300)  # fmt: skip
    assert_one_clear_error(result, "ethos-u-vela is not installed", "pip install 'edgekit[mcu]'")


def test_an_accelerator_vela_does_not_know_is_named(fashion_cnn, tmp_path):
    wrong = profile_with(tmp_path, "ethos-u55", **{'"ethos-u55-128"': '"ethos-u55-100"'})
    result = run_edgekit("build", fashion_cnn.model, "--profile", wrong, "--calibration",
                         fashion_cnn.calibration, "--out", tmp_path / "b")  # fmt: skip
    assert_one_clear_error(result, "hardware.accelerator 'ethos-u55-100'", "ethos-u55-128")


def test_coral_build_says_the_artifact_is_not_edge_tpu_compiled(coral_build, capsys):
    from edgekit.cli._build_output import print_report

    assert shutil.which("edgetpu_compiler") is None  # not installable on these machines
    report, bundle = coral_build
    edgetpu = report.primary.target.edgetpu
    assert (edgetpu.compiler, edgetpu.compiled) == (None, False)
    capsys.readouterr()
    print_report(report)
    printed = " ".join(capsys.readouterr().out.split())
    assert "note: model.tflite is not Edge-TPU-compiled (edgetpu_compiler not found on PATH)" in (
        printed
    )
    assert "the latency estimate assumes it is" in printed
    assert [p.name for p in bundle.glob("*edgetpu*")] == []


FAKE_COMPILER = """#!{python}
# A stand-in for edgetpu_compiler: writes the "compiled" model and the compiler's summary lines.
import pathlib, sys
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--out_dir") + 1])
model = pathlib.Path(args[-1])
out.mkdir(parents=True, exist_ok=True)
(out / (model.stem + "_edgetpu" + model.suffix)).write_bytes(model.read_bytes() + b"EDGETPU")
print("Edge TPU Compiler version 16.0.384591198")
print("Model compiled successfully in 12 ms.")
print("Number of operations that will run on Edge TPU: 9")
print("Number of operations that will run on CPU: 1")
"""


def test_an_edgetpu_compiler_on_path_is_run_and_its_model_bundled(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "edgetpu_compiler"
    fake.write_text(FAKE_COMPILER.format(python=sys.executable))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    digits = digits_cnn(tmp_path / "digits")
    out = tmp_path / "bundle"
    report = build(BuildRequest(model=digits.model, profile=load_profile("coral-edgetpu"),
                                out_dir=out, calibration=digits.calibration,
                                eval_data=digits.eval, latency_runs=0))  # fmt: skip
    edgetpu = report.primary.target.edgetpu
    assert (edgetpu.compiler, edgetpu.compiled) == (str(fake), True)
    assert (edgetpu.version, edgetpu.tpu_ops, edgetpu.cpu_ops) == ("16.0.384591198", 9, 1)
    assert report.primary.target.notes == (
        "model.tflite compiled by edgetpu_compiler 16.0.384591198: model_edgetpu.tflite in the "
        "bundle, 9 ops on the Edge TPU and 1 on the CPU",
    )
    compiled = (out / "model_edgetpu.tflite").read_bytes()
    assert compiled == (out / "model.tflite").read_bytes() + b"EDGETPU"
    assert "model_edgetpu.tflite" in verify_bundle(out).files  # listed with its digest
