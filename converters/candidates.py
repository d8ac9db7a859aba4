"""Candidates: artifacts a build could ship, each a frozen value with everything measured about it.

A candidate is built from one exporter and one of its variants (the profile's scheme, another
quantizer setting, fp32): quantized, compared with its format's fp32 baseline on the accuracy data
and, for the profile's own scheme when int8 misses the budget, rebuilt by the accuracy-aware
fallback with the costliest layers kept float. Its latency on the target is estimated from its op
table. Warnings are collected while it is built and frozen with it; measurements made later (host
latency) give a new candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from edgekit.converters.estimate import Estimate, estimate_latency
from edgekit.converters.fallback import FallbackOutcome, keep_layers_float
from edgekit.converters.formats import ArtifactIO, Exporter, OpCost, Quantized, Variant
from edgekit.converters.model_stats import ModelStats
from edgekit.converters.plan import BuildData, Plan
from edgekit.converters.prune import PruneOutcome
from edgekit.converters.target_report import TargetRun
from edgekit.converters.validate import Reference, accuracy_of
from edgekit.figures import AccuracyFigures
from edgekit.progress import Progress
from edgekit.runtime import Timing
from edgekit.vocab import BackendName, CalibrationMethod, ModelFormat, Quantization

# Samples the accuracy fallback compares layer by layer.
RANKING_SAMPLES = 64


@dataclass(frozen=True)
class Baseline:
    """A format's fp32 artifact of the unpruned model: what its candidates are compared with."""

    format: ModelFormat
    backend: BackendName
    content: bytes
    stats: ModelStats
    notes: tuple[str, ...]  # what loading and pre-processing changed

    @classmethod
    def of(cls, exporter: Exporter) -> Baseline:
        """The baseline ``exporter`` makes."""
        content = exporter.float_model()
        return cls(exporter.format, exporter.backend, content, exporter.inspect(content),
                   exporter.notes)  # fmt: skip


@dataclass(frozen=True)
class Candidate:
    """One artifact of one format, validated."""

    format: ModelFormat
    file_name: str
    backend: BackendName
    variant: Variant
    artifact: Quantized  # the bytes, the scheme, ops refused and layers kept float
    io: ArtifactIO
    stats: ModelStats
    baseline: Baseline
    calibration_method: CalibrationMethod | None
    pruning: PruneOutcome | None = None
    accuracy: AccuracyFigures | None = None
    fallback: FallbackOutcome | None = None
    warnings: tuple[str, ...] = ()
    estimate: Estimate | None = None  # latency on the target, from the profile's figures
    primary: bool = False  # the profile's own scheme (which alone may fall back for accuracy)
    # The per-op profile that named the ops a latency-aware candidate keeps float.
    latency_costs: tuple[OpCost, ...] = ()
    host: Timing | None = None  # one-sample latency on this machine, measured side by side
    target: TargetRun | None = None  # the target's own tools on it (TFLM, Vela), when it has any

    @property
    def label(self) -> str:
        """How it was made, as reports name it."""
        if self.latency_costs:
            kept = sum(1 for c in self.latency_costs if c.keep_float)
            return f"{self.variant.label}, {kept} ops slower in int8 kept float"
        return self.variant.label

    @property
    def content(self) -> bytes:
        """The artifact's bytes, as the bundle holds them."""
        return self.artifact.content

    @property
    def drop_pt(self) -> float:
        """Accuracy lost against fp32 (infinite when it could not be measured as a drop)."""
        acc = self.accuracy
        return float("inf") if acc is None or acc.drop_pt is None else acc.drop_pt

    def within(self, budget_pt: float) -> bool:
        """True unless a measured accuracy drop exceeds ``budget_pt``."""
        acc = self.accuracy
        return acc is None or acc.drop_pt is None or acc.drop_pt <= budget_pt


def fp32_variant(exporter: Exporter) -> Variant:
    """The variant that ships the fp32 model itself."""
    suffix = PurePath(exporter.file_name).suffix
    return Variant("fp32", "fp32", Quantization.NONE, f"model.fp32{suffix}")


def build_candidate(
    plan: Plan,
    exporter: Exporter,
    baseline: Baseline,
    *,
    pruning: PruneOutcome | None,
    data: BuildData,
    reference: Reference,
    data_label: str,
    progress: Progress,
    variant: Variant | None = None,
    keep_float: tuple[str, ...] = (),
    latency_costs: tuple[OpCost, ...] = (),
) -> Candidate:
    """Quantize per ``variant`` (default: the profile's scheme, which alone may run the
    accuracy-aware fallback), keeping ``keep_float`` layers float; validate; freeze."""
    build_cfg = plan.profile.build
    primary = variant is None
    variant = variant or exporter.variants(build_cfg)[0]
    quantized = exporter.quantize(
        build_cfg, data.calibration, variant=variant, keep_float=keep_float, progress=progress
    )
    warnings: list[str] = []
    if quantized.refused_ops:
        warnings.append(
            f"int8-only conversion refused {', '.join(quantized.refused_ops)}; kept in float"
        )
    accuracy: AccuracyFigures | None = None
    fallback: FallbackOutcome | None = None
    if reference.data is None:
        warnings.append("no --eval or --calibration data: accuracy was not measured")
    else:
        if data.evaluation is None:
            warnings.append("no --eval data: accuracy is agreement with fp32 on calibration data")
        quantized, accuracy, fallback, skipped = _validated(
            plan, exporter, baseline, quantized, pruning=pruning, data=data,
            reference=reference, data_label=data_label, progress=progress, may_fall_back=primary,
        )  # fmt: skip
        if skipped is not None:
            warnings.append(f"accuracy fallback skipped: {skipped}")
    stats = exporter.inspect(quantized.content)
    if stats.float_ops and quantized.scheme is Quantization.INT8:
        warnings.append("ops left in float in the int8 artifact: " + ", ".join(stats.float_ops))
    if stats.qdq_float_ops and quantized.scheme is Quantization.INT8:
        warnings.append(
            "quantized ops the runtime still runs as float kernels between quantize and "
            "dequantize ops: " + ", ".join(stats.qdq_float_ops)
        )
    file_name = variant.file_name
    if latency_costs:
        stem, dot, suffix = file_name.rpartition(".")
        file_name = f"{stem}.mixed{dot}{suffix}"
    return Candidate(
        format=exporter.format,
        file_name=file_name,
        backend=exporter.backend,
        variant=variant,
        artifact=quantized,
        io=exporter.describe(quantized.content),
        stats=stats,
        baseline=baseline,
        calibration_method=exporter.calibration_method(build_cfg, quantized.scheme),
        pruning=pruning,
        accuracy=accuracy,
        fallback=fallback,
        warnings=tuple(warnings),
        estimate=estimate_latency(stats, plan.profile, exporter.format),
        primary=primary,
        latency_costs=latency_costs,
    )


def _validated(
    plan: Plan,
    exporter: Exporter,
    baseline: Baseline,
    quantized: Quantized,
    *,
    pruning: PruneOutcome | None,
    data: BuildData,
    reference: Reference,
    data_label: str,
    progress: Progress,
    may_fall_back: bool,
) -> tuple[Quantized, AccuracyFigures, FallbackOutcome | None, str | None]:
    """The artifact and its accuracy against fp32 (the fallback's, when it runs), the fallback's
    outcome, and why the fallback was skipped when it was called for but could not help."""
    assert reference.data is not None  # the caller checked
    ref = reference.outputs(baseline.format, baseline.content, backend=baseline.backend)
    pruned = None
    if pruning is not None:
        pruned = reference.run(exporter.float_model(), exporter.format, backend=exporter.backend,
                               label="pruned fp32")  # fmt: skip

    def evaluate(content: bytes) -> AccuracyFigures:
        test = reference.run(content, exporter.format, backend=exporter.backend, label="quantized")
        assert reference.data is not None
        return accuracy_of(ref, test, reference.data, data_label=data_label, pruned=pruned)

    accuracy = evaluate(quantized.content)
    if not may_fall_back or not _fallback_called_for(plan, quantized, accuracy):
        return quantized, accuracy, None, None
    obstacle = _fallback_obstacle(plan, exporter, accuracy)
    if obstacle is not None:
        return quantized, accuracy, None, obstacle
    outcome = keep_layers_float(
        exporter,
        plan.profile.build,
        data.calibration,
        first=quantized,
        first_accuracy=accuracy,
        sample=reference.data.take(RANKING_SAMPLES),
        evaluate=evaluate,
        budget_pt=plan.budget_pt,
        progress=progress,
    )
    return outcome.quantized, outcome.accuracy, outcome, None


def _fallback_called_for(plan: Plan, quantized: Quantized, accuracy: AccuracyFigures) -> bool:
    """True when int8 missed the budget and the profile lets layers stay float."""
    missed = accuracy.drop_pt is not None and accuracy.drop_pt > plan.budget_pt
    return (
        plan.fallback_enabled
        and missed
        and quantized.scheme is Quantization.INT8
        and plan.profile.build.allow_float_fallback
    )


def _fallback_obstacle(plan: Plan, exporter: Exporter, accuracy: AccuracyFigures) -> str | None:
    """Why the fallback cannot help this artifact, or None when it may run."""
    pruning_lost = (
        accuracy.pruned_fp32 is not None
        and accuracy.fp32 is not None
        and accuracy.fp32 - accuracy.pruned_fp32 > plan.budget_pt
    )
    if pruning_lost:  # float layers cannot win back what pruning took
        return "the pruned model misses the budget before quantization"
    return exporter.keep_float_refusal(plan.profile.build)
