"""Models timed side by side, taking turns, with the median's confidence interval."""

from __future__ import annotations

import numpy as np

from edgekit.runtime.backend import open_backend
from edgekit.runtime.side_by_side import median_ci_ms, time_side_by_side


def _matmul_chain(width: int, depth: int) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, name = [], [], "x"
    for i in range(depth):
        inits.append(
            numpy_helper.from_array(
                rng.standard_normal((width, width)).astype(np.float32) / width, f"w{i}"
            )
        )
        nodes.append(helper.make_node("MatMul", [name, f"w{i}"], [f"h{i}"]))
        name = f"h{i}"
    graph = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, width])],
        initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return model.SerializeToString()


def test_the_heavier_model_is_measured_slower_with_a_tight_interval():
    light = open_backend("onnxruntime", _matmul_chain(64, 4), threads=1)
    heavy = open_backend("onnxruntime", _matmul_chain(512, 8), threads=1)
    x_light = [np.ones((1, 64), np.float32)]
    x_heavy = [np.ones((1, 512), np.float32)]
    light_t, heavy_t = time_side_by_side(
        [light, heavy], [x_light, x_heavy], min_runs=30, max_seconds=10
    )
    # 512x512x8 is 128 times the MACs of 64x64x4: far beyond any noise.
    assert heavy_t.p50_ms > 5 * light_t.p50_ms
    for timing in (light_t, heavy_t):
        assert timing.stats.count >= 30
        assert timing.stats.first_ms is not None
        assert 0 < timing.p50_ci_ms < timing.p50_ms


def test_median_interval_narrows_with_more_runs():
    rng = np.random.default_rng(1)
    few = median_ci_ms(list(rng.normal(10, 1, 30)))
    many = median_ci_ms(list(rng.normal(10, 1, 3000)))
    assert many < few / 5
    assert median_ci_ms([1.0, 2.0]) == float("inf")


def _timing(p50: float, ci: float):
    from edgekit.runtime.side_by_side import Timing
    from edgekit.schema import LatencyStats

    stats = LatencyStats(count=50, mean_ms=p50, std_ms=ci, min_ms=p50, p50_ms=p50, p90_ms=p50,
                         p99_ms=p50, max_ms=p50, first_ms=p50, init_ms=None)  # fmt: skip
    return Timing(stats, ci)


def test_contenders_are_the_eligible_ones_whose_interval_reaches_the_fastest():
    from edgekit.runtime.side_by_side import contenders

    timings = [_timing(1.0, 0.1), _timing(1.15, 0.1), _timing(1.3, 0.1), _timing(0.5, 0.01)]
    # The fastest (0.5 ms) cannot ship: the race is among the other three.
    assert contenders(timings, [True, True, True, False]) == [0, 1]
    assert contenders(timings, [True, True, True, True]) == [3]
    assert contenders(timings, [False] * 4) == []


class _Counted:
    """A real backend whose invocations are counted."""

    def __init__(self, backend) -> None:
        self.backend, self.calls = backend, 0
        self.inputs, self.outputs = backend.inputs, backend.outputs

    def invoke(self, feed):
        self.calls += 1
        return self.backend.invoke(feed)


def test_the_race_times_the_contenders_again_among_themselves():
    from edgekit.runtime.side_by_side import race

    # The twins share one session: two sessions of one model can differ by a few percent for
    # reasons of memory layout alone, and this test is about the race, not about ORT.
    twin = open_backend("onnxruntime", _matmul_chain(256, 4), threads=1)
    heavy_model = open_backend("onnxruntime", _matmul_chain(512, 8), threads=1)
    models = [_Counted(twin), _Counted(twin), _Counted(heavy_model)]
    feeds = [[np.ones((1, 256), np.float32)], [np.ones((1, 256), np.float32)],
             [np.ones((1, 512), np.float32)]]  # fmt: skip
    twin_a, twin_b, heavy = race(models, feeds, seconds_per_model=1.0, min_runs=30)
    warm = 1 + 5  # the first inference and the warm-up, before each round's timed runs
    # The heavy one was clearly slower: one round, every timed run of it in its figures.
    assert heavy.p50_ms > 4 * max(twin_a.p50_ms, twin_b.p50_ms)
    assert models[2].calls == heavy.stats.count + warm
    # The twins ran a second round among themselves: their figures are that round's alone.
    for model, timing in zip(models[:2], (twin_a, twin_b), strict=True):
        assert model.calls > timing.stats.count + 2 * warm
    # Identical models: the same median, within their intervals.
    margin = twin_a.p50_ci_ms + twin_b.p50_ci_ms + 0.02 * twin_a.p50_ms
    assert abs(twin_a.p50_ms - twin_b.p50_ms) <= margin
