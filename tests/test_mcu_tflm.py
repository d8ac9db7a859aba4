"""Microcontroller builds in TensorFlow Lite Micro: every op resolves, the outputs are LiteRT's, the
arena is measured and budgeted, and ``--emit c`` gives firmware a C array that compiles."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edgekit_testing import assert_one_clear_error, run_edgekit
from mcu_models import digits_cnn, gelu_cnn, profile_with

from edgekit.bundle import verify_bundle
from edgekit.converters.pipeline import BuildRequest, build
from edgekit.profiles import load_profile
from edgekit.vocab import EmitKind

# An independent TFLM run (not edgekit's child): allocate in ARENA bytes, then run every input of
# INPUTS.npz (already in the model's dtype) and save the outputs.
TFLM_SCRIPT = """
import sys, numpy as np
from tflite_micro import runtime
it = runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))
if len(sys.argv) > 3:
    x = np.load(sys.argv[3])["x"]
    ys = []
    for row in x:
        it.set_input(row[None], 0)
        it.invoke()
        ys.append(it.get_output(0)[0].copy())
    np.save(sys.argv[4], np.stack(ys))
"""


def _tflm(model: Path, arena: int, *extra: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", TFLM_SCRIPT, str(model), str(arena), *map(str, extra)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def _litert_builtin(model: Path, x: np.ndarray) -> np.ndarray:
    """LiteRT's reference kernels, one sample at a time."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(model), experimental_op_resolver_type=(
        OpResolverType.BUILTIN_REF))  # fmt: skip
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    ys = []
    for row in x:
        interp.set_tensor(inp["index"], row[None])
        interp.invoke()
        ys.append(interp.get_tensor(out["index"])[0].copy())
    return np.stack(ys)


def _quantized_eval(bundle: Path, eval_npz: Path) -> np.ndarray:
    """The eval inputs as the artifact takes them (int8 with its input scale and zero point)."""
    spec = verify_bundle(bundle).artifacts[0].inputs[0]
    assert spec.quantization is not None
    x = np.load(eval_npz)["x"]
    q = np.round(x / spec.quantization.scale) + spec.quantization.zero_point
    return np.clip(q, -128, 127).astype(np.int8)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return digits_cnn(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def stm32_digits(digits, tmp_path_factory):
    """The digits CNN built for stm32h7 with --emit c: (report, bundle directory)."""
    out = tmp_path_factory.mktemp("stm32-digits") / "bundle"
    report = build(BuildRequest(model=digits.model, profile=load_profile("stm32h7"), out_dir=out,
                                calibration=digits.calibration, eval_data=digits.eval,
                                emit=(EmitKind.C,)))  # fmt: skip
    return report, out


def _assert_runs_like_litert(bundle: Path, eval_npz: Path, tmp_path: Path) -> None:
    """The bundle's artifact in TFLM (run here, independently) gives LiteRT's outputs to one
    int8 step on every eval input, and the same class nearly always."""
    x = _quantized_eval(bundle, eval_npz)
    np.savez(tmp_path / "x.npz", x=x)
    model = bundle / "model.tflite"
    ran = _tflm(model, 1 << 20, tmp_path / "x.npz", tmp_path / "y.npy")
    assert ran.returncode == 0, ran.stderr[-2000:]
    tflm, litert = np.load(tmp_path / "y.npy"), _litert_builtin(model, x)
    assert tflm.dtype == np.int8
    assert np.abs(tflm.astype(int) - litert.astype(int)).max() <= 1
    assert np.mean(tflm.argmax(1) == litert.argmax(1)) >= 0.99


def test_the_digits_cnn_runs_in_tflm_with_litert_outputs(stm32_digits, digits, tmp_path):
    report, bundle = stm32_digits
    assert report.status == "ok"
    tflm = report.primary.target.tflm
    assert tflm.missing_ops == ()
    assert tflm.version.startswith("0.dev20261023182759")
    # The eval sample's 200 inputs (of 450), every output value compared
    assert (tflm.samples, tflm.values) == (200, 2000)
    assert tflm.max_diff <= 1.0
    assert tflm.compared_with == "LiteRT's reference kernels (BUILTIN_REF)"
    checks = {c.name: c for c in report.primary.checks}
    assert checks["ops in TFLite Micro"].status == "pass"
    assert checks["outputs: TFLM vs LiteRT"].status == "pass"
    assert checks["outputs: TFLM vs LiteRT"].value == tflm.max_diff
    _assert_runs_like_litert(bundle, digits.eval, tmp_path)


def test_the_measured_arena_is_the_ram_figure_and_the_smallest_that_allocates(stm32_digits):
    _, bundle = stm32_digits
    saved = json.loads((bundle / "build_report.json").read_text())
    tflm = saved["artifacts"][0]["target"]["tflm"]
    arena, ram = tflm["arena_bytes"], tflm["ram_bytes"]
    assert arena % 16 == 0
    assert ram == -(-int(np.ceil(arena * 1.2)) // 16) * 16  # + 20 %, in 16-byte steps
    # Weights live in flash: the measured arena replaces "weights + largest op".
    checks = {c["name"]: c for c in saved["artifacts"][0]["checks"]}
    assert "RAM (estimated)" not in checks
    assert checks["RAM (TFLM arena)"]["value"] == pytest.approx(ram / 1024)
    assert checks["RAM (TFLM arena)"]["limit"] == pytest.approx(0.5 * 1024)  # stm32h7: 0.5 MB
    model = bundle / "model.tflite"
    assert _tflm(model, arena).returncode == 0
    too_small = _tflm(model, arena - 16)
    assert too_small.returncode != 0
    assert "TFLM failed to allocate tensors" in too_small.stderr


def test_a_ram_budget_below_the_arena_fails_with_exit_1_naming_both(stm32_digits, digits,
                                                                    tmp_path):  # fmt: skip
    ram_kib = stm32_digits[0].primary.target.tflm.ram_bytes / 1024
    tight = profile_with(tmp_path, "stm32h7", **{"max_ram_mb = 0.5": "max_ram_mb = 0.004"})
    result = run_edgekit("build", digits.model, "--profile", tight, "--calibration",
                         digits.calibration, "--eval", digits.eval, "--out", tmp_path / "b",
                         "-q")  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert "over budget (RAM (TFLM arena))" in result.stderr
    row = next(line for line in result.stdout.splitlines() if "RAM (TFLM arena)" in line)
    assert f"{ram_kib:.3f} KiB" in row  # the same model measures the same arena
    assert "4.096 KiB" in row  # 0.004 MB
    assert "fail" in row
    assert not (tmp_path / "b").exists()


def test_an_op_tflm_lacks_fails_the_build_naming_it(tmp_path):
    gelu = gelu_cnn(tmp_path / "gelu")
    result = run_edgekit("build", gelu.model, "--profile", "stm32h7", "--calibration",
                         gelu.calibration, "--eval", gelu.eval, "--out", tmp_path / "b",
                         "--json", "-q")  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    art = json.loads(result.stdout)["artifacts"][0]
    assert ("GELU", "int8") in {(r["op"], r["precision"]) for r in art["ops"]}  # int8, not float
    failed = {c["name"]: c for c in art["checks"] if c["status"] == "fail"}
    assert list(failed) == ["ops in TFLite Micro"]
    assert failed["ops in TFLite Micro"]["detail"].startswith("GELU (TensorFlow Lite Micro 0.dev")
    assert art["target"]["tflm"]["missing_ops"] == ["GELU"]
    assert "over budget (ops in TFLite Micro)" in result.stderr
    assert not (tmp_path / "b").exists()


def _c_bytes(source: str) -> bytes:
    body = source[source.index("{") + 1 : source.rindex("}")]
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))


def test_the_c_array_compiles_and_holds_the_tflite(stm32_digits, tmp_path):
    report, bundle = stm32_digits
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to check the emitted C"
    flags = ["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O2"]
    argv = [gcc, *flags, "-c", str(bundle / "model_data.c"), "-o", str(tmp_path / "m.o")]
    compiled = subprocess.run(argv, capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    tflite = (bundle / "model.tflite").read_bytes()
    source, header = (bundle / "model_data.c").read_text(), (bundle / "model_data.h").read_text()
    assert _c_bytes(source) == tflite
    assert f"const size_t edgekit_model_data_len = {len(tflite)};" in source
    tflm = report.primary.target.tflm
    assert f"#define EDGEKIT_MODEL_ARENA_SIZE {tflm.ram_bytes}\n" in header
    spec = verify_bundle(bundle).artifacts[0].inputs[0]
    assert "#define EDGEKIT_MODEL_INPUT0_DIMS {1, 8, 8, 1}" in header
    assert f"#define EDGEKIT_MODEL_INPUT0_ZERO_POINT ({spec.quantization.zero_point})" in header
    scale = re.search(r"EDGEKIT_MODEL_INPUT0_SCALE (\S+)f", header).group(1)
    assert float(scale) == pytest.approx(spec.quantization.scale, rel=1e-7)
    # Linked into a program: the array is 16-byte aligned and is a TFLite flatbuffer.
    (tmp_path / "main.c").write_text(
        '#include <stdint.h>\n#include <stdio.h>\n#include <string.h>\n#include "model_data.h"\n'
        "int main(void) {\n"
        '  printf("%zu %d %d\\n", edgekit_model_data_len,\n'
        "         (int)((uintptr_t)edgekit_model_data % 16), memcmp(edgekit_model_data + 4, "
        '"TFL3", 4));\n  return 0;\n}\n'
    )
    linked = subprocess.run([gcc, *flags, f"-I{bundle}", str(tmp_path / "main.c"),
                             str(bundle / "model_data.c"), "-o", str(tmp_path / "main")],
                            capture_output=True, text=True)  # fmt: skip
    assert linked.returncode == 0, linked.stderr
    ran = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True, check=True)
    assert ran.stdout.split() == [str(len(tflite)), "0", "0"]
    # The manifest lists both files with their digests (and verify_bundle checked them).
    files = json.loads((bundle / "manifest.json").read_text())["files"]
    for name in ("model_data.c", "model_data.h"):
        assert files[name]["size"] == (bundle / name).stat().st_size


def test_emit_c_needs_a_tflite_profile(digits, tmp_path):
    onnx_only = profile_with(tmp_path, "rpi4", **{'formats = ["tflite", "onnx"]':
                                                  'formats = ["onnx"]'})  # fmt: skip
    result = run_edgekit("build", digits.model, "--profile", onnx_only, "--calibration",
                         digits.calibration, "--out", tmp_path / "b", "--emit", "c")  # fmt: skip
    assert_one_clear_error(result, "--emit c embeds a .tflite", "builds onnx")


def test_tflm_failing_to_allocate_even_a_large_arena_is_one_line():
    """A float model whose activations alone exceed the 16 MiB first arena."""
    import keras
    import tensorflow as tf

    from edgekit.converters.formats import ArtifactIO
    from edgekit.converters.tflm_run import run_tflm
    from edgekit.errors import ConversionError
    from edgekit.runtime import litert_interpreter, spec_of

    model = keras.Sequential([keras.Input((1024, 1024, 1), batch_size=1),
                              keras.layers.Conv2D(5, 3, padding="same")])  # fmt: skip
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    interp = litert_interpreter()(model_content=content)
    io = ArtifactIO(tuple(map(spec_of, interp.get_input_details())),
                    tuple(map(spec_of, interp.get_output_details())))  # fmt: skip
    with pytest.raises(ConversionError) as caught:
        run_tflm(content, io, [np.zeros((1, 1024, 1024, 1), np.float32)], file_name="big.tflite")
    message = str(caught.value)
    assert "\n" not in message
    assert "could not allocate big.tflite even in a 16 MiB arena" in message
    assert "missing" in message  # TFLM's own words: requested, available, missing


def test_a_probe_that_crashes_the_interpreter_counts_as_failing(stm32_digits, tmp_path):
    """Tiny arenas crash TFLM (SIGSEGV): the child dies, the probe fails, the next one runs."""
    from edgekit.converters.tflm_run import _Child

    _, bundle = stm32_digits
    shutil.copy(bundle / "model.tflite", tmp_path / "model.tflite")
    np.savez(tmp_path / "inputs.npz", x0=np.zeros((1, 8, 8, 1), np.int8))
    with _Child(tmp_path, outputs=1) as child:
        crashed = child.ask(64, samples=1, timeout=60)
        assert not crashed.ok
        assert "crashed" in crashed.error
        assert child.ask(1 << 20, samples=1, timeout=60).ok


@pytest.mark.slow
def test_the_fashion_cnn_runs_in_tflm_with_litert_outputs(fashion_cnn, tmp_path):
    out = tmp_path / "bundle"
    report = build(BuildRequest(model=fashion_cnn.model, profile=load_profile("stm32h7"),
                                out_dir=out, calibration=fashion_cnn.calibration,
                                eval_data=fashion_cnn.eval))  # fmt: skip
    assert report.status == "ok"
    tflm = report.primary.target.tflm
    assert tflm.missing_ops == ()
    assert tflm.max_diff <= 1.0
    assert tflm.arena_bytes > 28 * 28 * 16  # at least the first conv's int8 output
    assert tflm.ram_bytes / 1024 < 512  # within stm32h7's arena budget
    _assert_runs_like_litert(out, fashion_cnn.eval, tmp_path)
