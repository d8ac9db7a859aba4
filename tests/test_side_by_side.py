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
