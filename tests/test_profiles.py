"""Device profiles: shipped files validate; mistakes in a user's file are named precisely."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from edgekit_testing import assert_one_clear_error, run_edgekit

from edgekit.errors import ProfileError
from edgekit.profiles import load_profile, shipped_profiles
from edgekit.vocab import Quantization

REQUIRED = {"rpi4", "rpi5", "jetson-nano", "coral-edgetpu", "x86-64", "stm32h7"}


def test_required_profiles_ship_and_validate():
    assert set(shipped_profiles()) >= REQUIRED
    for name in shipped_profiles():
        profile = load_profile(name)
        assert profile.name == name
        assert len(profile.digest) == 64
        # Figures for the runtime of every format it builds (checked in test_estimate too).
        assert profile.throughput
        assert all(t.int8_gmacs > 0 and t.fp32_gmacs > 0 for t in profile.throughput.values())


def test_microcontroller_profile_is_int8_only():
    mcu = load_profile("stm32h7")
    assert mcu.build.quantization is Quantization.INT8
    assert mcu.build.allow_float_fallback is False
    assert mcu.hardware.ram_mb <= 2


def test_profile_is_frozen():
    profile = load_profile("rpi4")
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.name = "other"  # type: ignore[misc]


def _user_profile(tmp_path: Path, edit) -> Path:
    text = edit(load_profile_text("rpi4"))
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


def load_profile_text(name: str) -> str:
    from importlib import resources

    return resources.files("edgekit.device_profiles").joinpath(f"{name}.toml").read_text()


def test_user_profile_by_path(tmp_path):
    path = _user_profile(tmp_path, lambda t: t.replace('name = "rpi4"', 'name = "my-board"'))
    profile = load_profile(path)
    assert profile.name == "my-board"
    assert profile.source == str(path)


def test_unknown_key_names_key_and_file(tmp_path):
    path = _user_profile(tmp_path, lambda t: t.replace("max_latency_ms", "max_latncy_ms"))
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert "budgets.max_latncy_ms" in str(err.value)
    assert str(path) in str(err.value)


def test_wrong_type_is_an_error_not_a_coercion(tmp_path):
    path = _user_profile(tmp_path, lambda t: t.replace("threads = 4", 'threads = "4"'))
    with pytest.raises(ProfileError, match=r"runtime\.threads"):
        load_profile(path)


def test_bad_enum_value(tmp_path):
    path = _user_profile(
        tmp_path, lambda t: t.replace('quantization = "int8"', 'quantization = "int4"')
    )
    with pytest.raises(ProfileError, match=r"build\.quantization"):
        load_profile(path)


def test_missing_section(tmp_path):
    path = _user_profile(tmp_path, lambda t: t.split("[budgets]")[0])
    with pytest.raises(ProfileError, match="missing key 'budgets'"):
        load_profile(path)


def test_invalid_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("name = \n")
    with pytest.raises(ProfileError, match="invalid TOML"):
        load_profile(path)


def test_unknown_profile_lists_shipped():
    with pytest.raises(ProfileError) as err:
        load_profile("rpi9")
    assert "rpi9" in str(err.value)
    assert "rpi4" in str(err.value)


def test_cli_profiles_list_and_show():
    listed = run_edgekit("profiles", "list")
    assert listed.returncode == 0, listed.stderr
    for name in REQUIRED:
        assert name in listed.stdout
    shown = run_edgekit("profiles", "show", "coral-edgetpu")
    assert shown.returncode == 0, shown.stderr
    assert 'input_dtype = "uint8"' in shown.stdout
    assert "int8_gmacs = 100.0" in shown.stdout


def test_cli_profiles_show_unknown():
    assert_one_clear_error(run_edgekit("profiles", "show", "nope"), "unknown profile 'nope'")
