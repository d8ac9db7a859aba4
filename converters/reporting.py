"""The build report: every candidate explored with its verdict, and for each shipped one every
figure, estimate and budget check."""

from __future__ import annotations

import gzip
import hashlib
import time
from collections.abc import Sequence

from edgekit.converters import report as rpt
from edgekit.converters.budgets import Check, bundle_check
from edgekit.converters.candidates import Candidate
from edgekit.converters.choice import Choice, Verdict, candidate_checks, est_ram_mb
from edgekit.converters.estimate import estimate_inputs, estimate_latency
from edgekit.converters.plan import Plan
from edgekit.converters.sample_output import SampleOutput
from edgekit.converters.selection import Selection
from edgekit.converters.source import Source
from edgekit.converters.target_checks import target_report
from edgekit.figures import AccuracyFigures, LatencyFigures, SizeFigures
from edgekit.manifest import ProfileRef
from edgekit.profiles import DeviceProfile
from edgekit.vocab import BuildStatus, Quantization

# The accuracy section of an artifact built without --eval or --calibration data.
NOT_MEASURED = AccuracyFigures(
    metric=None, fp32=None, quantized=None, drop_pt=None, samples=0, data=None
)


def assemble_report(
    plan: Plan,
    source: Source,
    selection: Selection,
    choice: Choice,
    sample: SampleOutput | None,
    *,
    notes: tuple[str, ...],
    started: float,
) -> rpt.BuildReport:
    """Every figure of the build, per shipped artifact, every candidate's verdict, and the
    build's status."""
    request, profile = plan.request, plan.profile
    chosen = choice.shipped
    explored = tuple(v.candidate for v in choice.verdicts)
    bundle_bytes = sum(len(c.content) for c in chosen) + (
        0 if sample is None else len(sample.content)
    )
    on_sample = sample.figures if sample is not None else (None,) * len(chosen)
    artifacts = tuple(
        _artifact_report(plan, c, selection.tried(c.format), explored, choice,
                         on_sample=figures, bundle_bytes=bundle_bytes)
        for c, figures in zip(chosen, on_sample, strict=True)
    )  # fmt: skip
    if not any(a.failed for a in artifacts):
        status = BuildStatus.OK
    elif request.allow_over_budget:
        status = BuildStatus.OVER_BUDGET_OVERRIDDEN
    else:
        status = BuildStatus.OVER_BUDGET
    digest = hashlib.sha256(b"".join(c.content for c in chosen)).hexdigest()[:12]
    return rpt.BuildReport(
        status=status,
        bundle_id=f"{source.name}-{profile.name}-{digest}",
        bundle_dir=None if status is BuildStatus.OVER_BUDGET else str(request.out_dir.resolve()),
        model=rpt.ModelRef(path=str(request.model), kind=source.kind, sha256=source.sha256),
        profile=ProfileRef(name=profile.name, source=profile.source, digest=profile.digest),
        preferred=chosen[0].file_name,
        artifacts=artifacts,
        candidates=tuple(_candidate_row(plan, v) for v in choice.verdicts),
        choice=choice.summary,
        selection=choice.site,
        eval_sample=None
        if sample is None
        else rpt.EvalSampleInfo(
            samples=sample.count,
            requested=sample.requested,
            coding=sample.coding,
            bytes=len(sample.content),
            note=sample.note,
        ),
        notes=notes,
        duration_s=time.perf_counter() - started,
    )


def _artifact_report(
    plan: Plan,
    candidate: Candidate,
    tried: tuple[Candidate, ...],
    explored: Sequence[Candidate],
    choice: Choice,
    *,
    on_sample: AccuracyFigures | None,
    bundle_bytes: int,
) -> rpt.ArtifactReport:
    profile, stats = plan.profile, candidate.stats
    checks = candidate_checks(plan, candidate) + bundle_check(profile, bundle_bytes)
    mine = tuple(w for w in choice.warnings if w.startswith(f"{candidate.file_name} "))
    return rpt.ArtifactReport(
        artifact=rpt.ArtifactInfo(
            file=candidate.file_name,
            format=candidate.format,
            quantization=candidate.artifact.scheme,
            per_channel=profile.build.per_channel,
            input_dtype=candidate.io.inputs[0].dtype,
            output_dtype=candidate.io.outputs[0].dtype,
            calibration_method=candidate.calibration_method,
            variant=candidate.label,
        ),
        accuracy=candidate.accuracy or NOT_MEASURED,
        sample_accuracy=on_sample,
        sizes=_size_figures(candidate),
        latency=_latency_figures(candidate, explored, plan),
        estimate_inputs=estimate_inputs(stats),
        macs=stats.macs,
        params=stats.params,
        est_ram_mb=est_ram_mb(candidate),
        pruning=_pruning_figures(candidate, tried, profile),
        fallback=_fallback_figures(candidate),
        latency_fallback=_latency_fallback(candidate),
        ops=tuple(
            rpt.OpTableRow(op=r.op, precision=r.precision, count=r.count, macs=r.macs)
            for r in stats.table()
        ),
        float_ops=stats.float_ops,
        qdq_float_ops=stats.qdq_float_ops,
        refused_ops=candidate.artifact.refused_ops,
        checks=tuple(_check_row(c) for c in checks),
        warnings=candidate.warnings + mine,
        target=target_report(candidate),
    )


def _candidate_row(plan: Plan, verdict: Verdict) -> rpt.CandidateRow:
    c = verdict.candidate
    host, estimate = c.host, c.estimate
    return rpt.CandidateRow(
        file=c.file_name,
        format=c.format,
        variant=c.label,
        quantization=c.artifact.scheme,
        kept_float=len(c.artifact.kept_float),
        accuracy=c.accuracy or NOT_MEASURED,
        model_bytes=len(c.content),
        kept_float_names=c.artifact.kept_float,
        latency_profile=_op_cost_rows(c),
        host_p50_ms=None if host is None else host.p50_ms,
        host_p50_ci_ms=None if host is None else host.p50_ci_ms,
        host_p90_ms=None if host is None else host.stats.p90_ms,
        host_runs=None if host is None else host.stats.count,
        est_target_ms=None if estimate is None else estimate.ms,
        shipped=verdict.shipped,
        verdict=verdict.reason,
    )


def _latency_fallback(candidate: Candidate) -> rpt.LatencyFallbackFigures | None:
    if not candidate.latency_costs:
        return None
    return rpt.LatencyFallbackFigures(
        kept_float=tuple(c.node for c in candidate.latency_costs if c.keep_float),
        ops=_op_cost_rows(candidate),
    )


def _op_cost_rows(candidate: Candidate) -> tuple[rpt.OpCostRow, ...]:
    return tuple(
        rpt.OpCostRow(node=c.node, op=c.op, float_us=c.float_us, int8_us=c.int8_us,
                      int8_kernel=c.int8_kernel, slower_in_int8=c.slower_in_int8,
                      keep_float=c.keep_float)
        for c in candidate.latency_costs
    )  # fmt: skip


def _check_row(check: Check) -> rpt.CheckRow:
    return rpt.CheckRow(name=check.name, value=check.value, limit=check.limit, unit=check.unit,
                        status=check.status, detail=check.detail)  # fmt: skip


def _size_figures(candidate: Candidate) -> SizeFigures:
    fp32, content = candidate.baseline.content, candidate.content
    fp32_gz, final_gz = _gzip_size(fp32), _gzip_size(content)
    return SizeFigures(
        fp32_bytes=len(fp32),
        model_bytes=len(content),
        ratio=len(content) / len(fp32),
        fp32_gzip_bytes=fp32_gz,
        gzip_bytes=final_gz,
        gzip_ratio=final_gz / fp32_gz,
    )


def _latency_figures(
    candidate: Candidate, explored: Sequence[Candidate], plan: Plan
) -> LatencyFigures:
    host, estimate = candidate.host, candidate.estimate
    fp32 = next(
        (c for c in explored if c.format is candidate.format
         and c.artifact.scheme is Quantization.NONE and c.host is not None),
        None,
    )  # fmt: skip
    fp32_host = None if fp32 is None or fp32.host is None else fp32.host.p50_ms
    base = candidate.baseline
    return LatencyFigures(
        est_target_ms=None if estimate is None else estimate.ms,
        est_target_fp32_ms=estimate_latency(base.stats, plan.profile, base.format).ms,
        host_p50_ms=None if host is None else host.p50_ms,
        host_p50_fp32_ms=fp32_host,
        host_ratio=None if host is None or not fp32_host else host.p50_ms / fp32_host,
        host_threads=plan.host_threads,
        est_runtime=None if estimate is None else estimate.runtime,
        est_unknown=None if estimate is None or estimate.known else estimate.unknown_reason,
        host_p50_ci_ms=None if host is None else host.p50_ci_ms,
        host_p90_ms=None if host is None else host.stats.p90_ms,
    )


def _fallback_figures(candidate: Candidate) -> rpt.FallbackFigures | None:
    outcome = candidate.fallback
    if outcome is None:
        return None
    return rpt.FallbackFigures(
        plain_int8_drop_pt=outcome.plain_drop_pt,
        kept_float=outcome.quantized.kept_float,
        met_budget=outcome.met,
        tries=tuple(
            rpt.FallbackTry(
                kept_float=len(s.kept_float), drop_pt=s.drop_pt, within_budget=s.within_budget
            )
            for s in outcome.steps
        ),
        worst_layers=tuple(
            rpt.LayerCostRow(name=c.name, op=c.op, loss_db=c.loss_db) for c in outcome.ranking[:10]
        ),
    )


def _pruning_figures(
    candidate: Candidate, tried: tuple[Candidate, ...], profile: DeviceProfile
) -> rpt.PruningFigures | None:
    pruning = candidate.pruning
    if pruning is None:
        return None
    before, after = candidate.baseline.stats, candidate.stats
    budget = profile.budgets.max_accuracy_drop_pt
    return rpt.PruningFigures(
        kind=pruning.spec.kind,
        target=pruning.spec.sparsity,
        schedule=pruning.schedule,
        artifact_sparsity=after.weight_sparsity,
        params_before=before.params,
        params_after=after.params,
        nonzero_params_after=after.nonzero_params,
        macs_before=before.macs,
        macs_after=after.macs,
        kernels=tuple(
            rpt.PrunedKernel(
                layer=k.layer, weight=k.weight, size=k.size, target=k.target, achieved=k.achieved
            )
            for k in pruning.layers
        ),
        channels=tuple(
            rpt.PrunedChannels(
                layer=c.layer, before=c.channels_before, after=c.channels_after, skipped=c.skipped
            )
            for c in pruning.channels
        ),
        artifact_weights=tuple(
            rpt.ArtifactWeight(op=w.op, tensor=w.tensor, size=w.size, sparsity=w.zeros / w.size)
            for w in after.weights
            if w.size
        ),
        attempts=tuple(
            rpt.PruneAttempt(
                sparsity=c.pruning.spec.sparsity if c.pruning else 0.0,
                drop_pt=c.accuracy.drop_pt if c.accuracy else None,
                within_budget=c.within(budget),
            )
            for c in tried
        ),
    )


def _gzip_size(content: bytes) -> int:
    return len(gzip.compress(content, compresslevel=9, mtime=0))
