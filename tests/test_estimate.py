"""Latency estimates per runtime: the runtime that runs the artifact on the board, its figures."""

from __future__ import annotations

import dataclasses

import pytest

from edgekit.converters.estimate import estimate_inputs, estimate_latency
from edgekit.converters.model_stats import ModelStats, OpInfo
from edgekit.profiles import Throughput, load_profile
from edgekit.vocab import BackendName, ModelFormat, OpPrecision


def _stats(*ops: OpInfo, uncounted: tuple[str, ...] = ()) -> ModelStats:
    return ModelStats(ops=ops, params=0, arena_bytes=0, uncounted_ops=uncounted)


def test_an_onnx_artifact_for_rpi4_is_estimated_with_onnx_runtime_figures():
    profile = load_profile("rpi4")
    assert profile.runtime.backend == BackendName.LITERT  # the board's usual runtime
    stats = _stats(OpInfo("Conv", OpPrecision.INT8, 10_000_000))
    onnx = estimate_latency(stats, profile, ModelFormat.ONNX)
    tflite = estimate_latency(stats, profile, ModelFormat.TFLITE)
    assert onnx.runtime == BackendName.ONNXRUNTIME
    assert tflite.runtime == BackendName.LITERT
    ort = profile.throughput[BackendName.ONNXRUNTIME]
    expected = 10_000_000 / (ort.int8_gmacs * 1e9) * 1e3 + ort.op_overhead_us / 1e3
    assert onnx.ms == pytest.approx(expected)
    assert onnx.ms != pytest.approx(tflite.ms)


def test_a_runtime_without_figures_gives_unknown_never_a_number():
    profile = load_profile("rpi4")
    stripped = dataclasses.replace(
        profile, throughput={BackendName.LITERT: profile.throughput[BackendName.LITERT]}
    )
    estimate = estimate_latency(
        _stats(OpInfo("Conv", OpPrecision.INT8, 1000)), stripped, ModelFormat.ONNX
    )
    assert estimate.ms is None
    assert "no figures for onnxruntime" in estimate.unknown_reason


def test_uncounted_ops_make_the_estimate_unknown():
    profile = load_profile("x86-64")
    stats = _stats(OpInfo("Loop", OpPrecision.FLOAT, 0), uncounted=("Loop",))
    estimate = estimate_latency(stats, profile, ModelFormat.ONNX)
    assert estimate.ms is None
    assert "Loop" in estimate.unknown_reason


def test_precision_aware_figures_and_per_op_cost():
    figures = Throughput(
        int8_gmacs=20.0, fp32_gmacs=10.0, int8_depthwise_gmacs=5.0, op_overhead_us=10.0
    )
    stats = _stats(
        OpInfo("Conv", OpPrecision.INT8, 2_000_000),
        OpInfo("Conv", OpPrecision.INT8, 1_000_000, depthwise=True),
        OpInfo("Conv", OpPrecision.FLOAT_QDQ, 1_000_000),
        OpInfo("QuantizeLinear", OpPrecision.CONVERT, 0),
    )
    inputs = estimate_inputs(stats)
    assert (inputs.int8_macs, inputs.int8_depthwise_macs, inputs.float_macs, inputs.ops) == (
        2_000_000, 1_000_000, 1_000_000, 4,
    )  # fmt: skip
    # 0.1 ms dense int8 + 0.2 ms depthwise + 0.1 ms float + 4 ops x 10 us
    assert figures.predicted_ms(inputs) == pytest.approx(0.1 + 0.2 + 0.1 + 0.04)


def test_every_shipped_profile_has_figures_for_the_runtimes_of_its_formats():
    from edgekit.profiles import shipped_profiles

    for name in shipped_profiles():
        profile = load_profile(name)
        for fmt in profile.build.formats:
            assert profile.runtime_for(fmt) in profile.throughput, (name, fmt)
