"""Bad input to edgekit build: one clear line on stderr, exit 2, no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgekit_testing import assert_one_clear_error, run_edgekit


def _build(model: Path, tmp_path: Path, *extra: str | Path):
    out = tmp_path / "bundle"
    result = run_edgekit("build", model, "--out", out, *extra, cwd=tmp_path)
    assert not out.exists(), "nothing may be written on bad input"
    return result


def _with_data(fashion_cnn, *, profile: str = "rpi4") -> list[str | Path]:
    return [
        "--profile",
        profile,
        "--calibration",
        fashion_cnn.calibration,
        "--eval",
        fashion_cnn.eval,
    ]


def test_missing_model_file(tmp_path, fashion_cnn):
    result = _build(tmp_path / "nope.keras", tmp_path, *_with_data(fashion_cnn))
    assert_one_clear_error(result, "model not found", "nope.keras")


def test_random_bytes_named_keras(tmp_path, fashion_cnn):
    fake = tmp_path / "random.keras"
    fake.write_bytes(np.random.default_rng(0).bytes(4096))
    assert_one_clear_error(
        _build(fake, tmp_path, *_with_data(fashion_cnn)), "random.keras", "not a"
    )


def test_truncated_model(tmp_path, fashion_cnn):
    data = fashion_cnn.model.read_bytes()
    cut = tmp_path / "cut.keras"
    cut.write_bytes(data[: len(data) // 2])
    assert_one_clear_error(
        _build(cut, tmp_path, *_with_data(fashion_cnn)), "cut.keras", "truncated"
    )


def test_corrupted_archive_member(tmp_path, fashion_cnn):
    """The zip directory survives but a member's bytes are damaged."""
    import zipfile

    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(fashion_cnn.model) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            payload = src.read(item.filename)
            if item.filename == "config.json":
                payload = payload[: len(payload) // 2]
            dst.writestr(item, payload)
    result = _build(broken, tmp_path, *_with_data(fashion_cnn))
    assert_one_clear_error(result, "cannot load Keras model", "broken.keras")


def test_unsupported_model_file(tmp_path, fashion_cnn):
    # A .pt file is a PyTorch checkpoint, with its own message (tests/test_torch_inputs.py).
    other = tmp_path / "model.caffemodel"
    other.write_bytes(b"\x80\x02")
    assert_one_clear_error(
        _build(other, tmp_path, *_with_data(fashion_cnn)),
        "unsupported model file",
        "expected .keras",  # and says what it takes
    )


def test_unknown_profile(tmp_path, fashion_cnn):
    result = _build(
        fashion_cnn.model, tmp_path, "--profile", "rpi9", "--calibration", fashion_cnn.calibration
    )
    assert_one_clear_error(result, "unknown profile 'rpi9'", "rpi4")


def test_profile_with_unknown_key(tmp_path, fashion_cnn):
    from importlib import resources

    text = resources.files("edgekit.device_profiles").joinpath("rpi4.toml").read_text()
    bad = tmp_path / "board.toml"
    bad.write_text(text.replace("[runtime]", "[runtime]\nthreds = 2"))
    result = _build(
        fashion_cnn.model, tmp_path, "--profile", bad, "--calibration", fashion_cnn.calibration
    )
    assert_one_clear_error(result, "unknown key 'runtime.threds'", "board.toml")


def test_calibration_of_the_wrong_shape(tmp_path, fashion_cnn):
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.zeros((10, 32, 32, 3), np.float32))
    result = _build(fashion_cnn.model, tmp_path, "--profile", "rpi4", "--calibration", calib)
    assert_one_clear_error(result, "calibration data", "(32, 32, 3)", "(28, 28, 1)")


def test_empty_calibration_set(tmp_path, fashion_cnn):
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.zeros((0, 28, 28, 1), np.float32))
    result = _build(fashion_cnn.model, tmp_path, "--profile", "rpi4", "--calibration", calib)
    assert_one_clear_error(result, "calibration data", "empty")


def test_int8_without_calibration(tmp_path, fashion_cnn):
    result = _build(fashion_cnn.model, tmp_path, "--profile", "rpi4", "--eval", fashion_cnn.eval)
    assert_one_clear_error(result, "needs calibration data", "--calibration")


def test_missing_eval_file(tmp_path, fashion_cnn):
    result = _build(
        fashion_cnn.model, tmp_path, "--profile", "rpi4", "--calibration", fashion_cnn.calibration,
        "--eval", tmp_path / "missing.npz",
    )  # fmt: skip
    assert_one_clear_error(result, "eval data not found")


@pytest.mark.parametrize("args", [["build"], ["build", "m.keras"]])
def test_usage_errors_exit_2(tmp_path, args):
    result = run_edgekit(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_help_explains_the_contract():
    result = run_edgekit("build", "--help")
    assert result.returncode == 0
    for words in (
        "--profile",
        "--calibration",
        "--eval",
        "--json",
        "over budget",
        "--allow-over-budget",
    ):
        assert words in result.stdout
