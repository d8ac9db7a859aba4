"""Latency on the target, estimated from what an artifact runs and the profile's figures for the
runtime that will run it there.

Per op: MACs over the throughput of the precision the runtime really runs it in (int8 kernels,
int8 depthwise convolutions, float kernels including those between Q/DQ pairs), plus a fixed cost
per op, which is what decides tiny models. No figures for that runtime, or ops whose MACs the
artifact does not state (loops, custom ops): the estimate is unknown, never a guess that passes.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.converters.model_stats import ModelStats
from edgekit.figures import EstimateInputs
from edgekit.profiles import DeviceProfile
from edgekit.vocab import BackendName, ModelFormat


@dataclass(frozen=True)
class Estimate:
    """An estimated latency on the target, or why there is none."""

    runtime: BackendName
    ms: float | None
    unknown_reason: str = ""

    @property
    def known(self) -> bool:
        """True when there is a figure."""
        return self.ms is not None


def estimate_inputs(stats: ModelStats) -> EstimateInputs:
    """What an estimate of an artifact is computed from, read off its op table."""
    integer = [op for op in stats.ops if op.precision.integer]
    return EstimateInputs(
        int8_macs=sum(op.macs for op in integer if not op.depthwise),
        int8_depthwise_macs=sum(op.macs for op in integer if op.depthwise),
        float_macs=stats.float_macs,
        ops=len(stats.ops),
    )


def estimate_latency(stats: ModelStats, profile: DeviceProfile, fmt: ModelFormat) -> Estimate:
    """The artifact's latency on the profile's board, from the figures of its runtime there."""
    runtime = profile.runtime_for(fmt)
    figures = profile.throughput.get(runtime)
    if figures is None:
        return Estimate(runtime, None, f"profile {profile.name} has no figures for {runtime}")
    if stats.uncounted_ops:
        ops = ", ".join(stats.uncounted_ops)
        return Estimate(runtime, None, f"the MACs of {ops} cannot be read from the artifact")
    return Estimate(runtime, figures.predicted_ms(estimate_inputs(stats)))
