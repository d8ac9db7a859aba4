"""`edgekit profiles calibrate`: a profile's figures fitted to what a fleet measured."""

from __future__ import annotations

import numpy as np
import pytest
from edgekit_testing import assert_one_clear_error, run_edgekit
from report_factory import BundleSpec, make_report

from edgekit.collector import Store
from edgekit.figures import EstimateInputs
from edgekit.profiles import Throughput, load_profile
from edgekit.vocab import BackendName

# The fleet's true LiteRT speed on rpi4, unknown to the profile (which says 16 / 10 / 4 us).
TRUTH = Throughput(int8_gmacs=24.0, fp32_gmacs=13.0, op_overhead_us=7.0)


def _fleet(db: str, *, boards: int = 4, bundles: int = 9, noise: float = 0.03) -> None:
    """Boards reporting windows of bundles of varied shape; p50 from the true figures with a few
    percent of per-window noise."""
    rng = np.random.default_rng(7)
    with Store(db) as store:
        for b in range(bundles):
            inputs = EstimateInputs(
                int8_macs=int(rng.integers(1, 60) * 1e6),
                int8_depthwise_macs=0,
                float_macs=int(rng.integers(0, 20) * 1e6),
                ops=int(rng.integers(10, 400)),
            )
            spec = BundleSpec(f"model-{b}-rpi4", "rpi4", 1.0, 90.0, 89.5, 100_000)
            true_ms = TRUTH.predicted_ms(inputs)
            for d in range(boards):
                for window in range(3):
                    base = make_report(f"rpi4-{d:02d}", sequence=b * 10 + window, bundle=spec,
                                       p50_ms=true_ms * (1 + rng.normal(0, noise)))  # fmt: skip
                    estimated = load_profile("rpi4").throughput[BackendName.LITERT]
                    build = base.build.model_copy(update={
                        "estimate_inputs": inputs, "est_latency_ms": estimated.predicted_ms(inputs),
                    })  # fmt: skip
                    store.add_report(base.model_copy(update={"build": build}))


def test_the_fit_finds_the_true_figures_and_the_error_falls(tmp_path):
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    _fleet(db)
    out = tmp_path / "my-rpi4.toml"
    result = run_edgekit("profiles", "calibrate", "--db", db, "--profile", "rpi4", "--out", out)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "litert" in line)
    errors = [
        int(cell.strip().rstrip("%")) for cell in row.split("│") if cell.strip().endswith("%")
    ]
    before, after = errors
    assert after < before
    assert after <= 5
    calibrated = load_profile(out)
    fitted = calibrated.throughput[BackendName.LITERT]
    assert fitted.int8_gmacs == pytest.approx(TRUTH.int8_gmacs, rel=0.10)
    assert fitted.fp32_gmacs == pytest.approx(TRUTH.fp32_gmacs, rel=0.10)
    assert fitted.op_overhead_us == pytest.approx(TRUTH.op_overhead_us, rel=0.10)
    # The rest of the profile is the shipped one: later builds take it as --profile.
    assert calibrated.name == "rpi4"
    assert calibrated.budgets == load_profile("rpi4").budgets
    assert (
        calibrated.throughput[BackendName.ONNXRUNTIME]
        == (load_profile("rpi4").throughput[BackendName.ONNXRUNTIME])
    )


def test_too_few_measurements_say_how_many_are_needed(tmp_path):
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    _fleet(db, boards=1, bundles=2)
    result = run_edgekit("profiles", "calibrate", "--db", db, "--profile", "rpi4")
    assert_one_clear_error(result, "not enough measurements of profile rpi4", "need 6")


def test_a_missing_database_is_one_clear_line(tmp_path):
    result = run_edgekit(
        "profiles", "calibrate", "--db", f"sqlite:///{tmp_path / 'none.db'}", "--profile", "rpi4"
    )
    assert_one_clear_error(result, "no SQLite database")
