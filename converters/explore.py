"""Every candidate worth shipping, measured: a small, principled set per format, not everything.

Per format: the profile's scheme (already built, with the accuracy-aware fallback), the other
quantizer variants the exporter names (ONNX: S8S8/U8S8 QDQ, per-channel and per-tensor weights;
TFLite: dynamic-range, fp16), and fp32: a candidate where the board may run float, else only the
reference that says when what ships is slower than the float model. Then, measured side by side
on this machine (taking turns, until each median is known), the fastest int8 candidate is
profiled per op against fp32, and the ops slower in int8 are kept float in one more candidate:
the latency-aware fallback. Every candidate's accuracy is measured like the first one's; the
choice (:mod:`edgekit.converters.choice`) drops those that miss a budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from edgekit.converters.candidates import Candidate, build_candidate, fp32_variant
from edgekit.converters.formats import Exporter
from edgekit.converters.plan import BuildData, Plan
from edgekit.converters.validate import Reference
from edgekit.datasets import LabelledData
from edgekit.progress import Progress
from edgekit.runtime import open_backend, race, to_model_dtype
from edgekit.vocab import IODtype, ModelFormat, Quantization

# Seconds spent timing each candidate, at most, per side-by-side round.
SECONDS_PER_CANDIDATE = 2.0


def explore(
    plan: Plan,
    chosen: Sequence[Candidate],
    exporters: Mapping[ModelFormat, Exporter],
    *,
    data: BuildData,
    reference: Reference,
    data_label: str,
    progress: Progress,
) -> tuple[Candidate, ...]:
    """The candidates of every format: ``chosen`` (the profile's scheme per format, from
    ``exporters``, which made them), then the other variants and fp32."""
    found: list[Candidate] = []
    for first in chosen:
        exporter = exporters[first.format]
        found.append(first)
        others = list(exporter.variants(plan.profile.build)[1:])
        if first.artifact.scheme is not Quantization.NONE:
            # Where the board runs int8 only the choice drops it; it is measured all the same.
            others.append(fp32_variant(exporter))
        for variant in others:
            with progress.task(f"Candidate: {variant.label} ({first.format.value})", total=0):
                found.append(
                    build_candidate(plan, exporter, first.baseline, pruning=first.pruning,
                                    data=data, reference=reference, data_label=data_label,
                                    progress=progress, variant=variant)
                )  # fmt: skip
    return tuple(found)


def float_allowed(plan: Plan) -> bool:
    """Whether the board may run a float candidate: float ops allowed and float I/O."""
    build = plan.profile.build
    floats = (build.input_dtype, build.output_dtype) == (IODtype.FLOAT32, IODtype.FLOAT32)
    return build.allow_float_fallback and floats


def runs_on_board(plan: Plan, candidate: Candidate) -> bool:
    """False for a float candidate where the board runs int8 only (or its I/O is not float)."""
    return candidate.artifact.scheme is not Quantization.NONE or float_allowed(plan)


def measure(
    plan: Plan,
    candidates: Sequence[Candidate],
    exporters: Mapping[ModelFormat, Exporter],
    *,
    data: BuildData,
    reference: Reference,
    data_label: str,
    progress: Progress,
) -> tuple[Candidate, ...]:
    """``candidates`` with their host latency (side by side), plus latency-aware candidates
    where a per-op profile names ops that are slower in int8; unchanged without data or when
    the request skips latency."""
    sample = reference.data
    if sample is None or plan.request.latency_runs <= 0:
        return tuple(candidates)
    timed = timed_side_by_side(plan, candidates, sample, progress=progress)
    mixed = []
    for fmt, exporter in exporters.items():
        made = _latency_aware(plan, timed, fmt, exporter, data=data, reference=reference,
                              data_label=data_label, progress=progress)  # fmt: skip
        if made is not None:
            mixed.append(made)
    if not mixed:
        return timed
    # One more round with everything, so every figure compared comes from the same run.
    return timed_side_by_side(plan, [*candidates, *mixed], sample, progress=progress)


def timed_side_by_side(
    plan: Plan, candidates: Sequence[Candidate], sample: LabelledData, *, progress: Progress
) -> tuple[Candidate, ...]:
    """Each candidate with its one-sample latency on this machine, all timed taking turns."""
    first = [x[:1] for x in sample.xs]
    models = [open_backend(c.backend, c.content, threads=plan.host_threads) for c in candidates]
    feeds = [
        [to_model_dtype(np.asarray(x), spec) for x, spec in zip(first, model.inputs, strict=True)]
        for model in models
    ]
    # The contenders for shipping are timed again among themselves (runtime.side_by_side.race).
    eligible = [_may_ship(plan, c) for c in candidates]
    with progress.task(f"Timing {len(models)} candidates side by side", total=0) as task:
        timings = race(models, feeds, eligible=eligible, min_runs=plan.request.latency_runs,
                       seconds_per_model=SECONDS_PER_CANDIDATE, task=task)  # fmt: skip
    return tuple(dataclasses.replace(c, host=t) for c, t in zip(candidates, timings, strict=True))


def _may_ship(plan: Plan, candidate: Candidate) -> bool:
    """Within the accuracy budget, and runnable on the board (fp32 only where float may run)."""
    return runs_on_board(plan, candidate) and candidate.within(plan.budget_pt)


def _latency_aware(
    plan: Plan,
    timed: Sequence[Candidate],
    fmt: ModelFormat,
    exporter: Exporter,
    *,
    data: BuildData,
    reference: Reference,
    data_label: str,
    progress: Progress,
) -> Candidate | None:
    """The fastest int8 candidate of ``fmt`` within the accuracy budget with the ops its per-op
    profile finds slower in int8 kept float; None when there is nothing to keep float."""
    int8 = [
        c
        for c in timed
        if c.format is fmt and c.artifact.scheme is Quantization.INT8 and c.within(plan.budget_pt)
    ]
    if not int8 or not float_allowed(plan) or reference.data is None:
        return None
    base = min(int8, key=lambda c: c.host.p50_ms if c.host else float("inf"))
    with progress.task(f"Profiling {base.label} per op ({fmt.value})", total=0):
        costs = exporter.op_costs(base.content, reference.data, threads=plan.host_threads)
    if not costs:
        return None
    slow = tuple(c.node for c in costs if c.keep_float)
    if not slow:
        return None
    keep = tuple(dict.fromkeys((*base.artifact.kept_float, *slow)))
    with progress.task(f"Candidate: {base.label} with {len(slow)} ops float", total=0):
        return build_candidate(plan, exporter, base.baseline, pruning=base.pruning, data=data,
                               reference=reference, data_label=data_label, progress=progress,
                               variant=base.variant, keep_float=keep,
                               latency_costs=costs)  # fmt: skip
