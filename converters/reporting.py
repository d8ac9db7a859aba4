"""The build report assembled from the chosen candidates: figures, estimates and budget checks."""

from __future__ import annotations

import gzip
import hashlib
import time

from edgekit.converters import report as rpt
from edgekit.converters.budgets import Check, check_budgets
from edgekit.converters.candidates import Candidate
from edgekit.converters.plan import Plan
from edgekit.converters.selection import Selection
from edgekit.converters.source import Source
from edgekit.figures import AccuracyFigures, LatencyFigures, SizeFigures
from edgekit.manifest import ProfileRef
from edgekit.profiles import DeviceProfile
from edgekit.vocab import BuildStatus

# The accuracy section of an artifact built without --eval or --calibration data.
NOT_MEASURED = AccuracyFigures(
    metric=None, fp32=None, quantized=None, drop_pt=None, samples=0, data=None
)


def assemble_report(
    plan: Plan,
    source: Source,
    selection: Selection,
    *,
    notes: tuple[str, ...],
    started: float,
) -> rpt.BuildReport:
    """Every figure of the build, per chosen artifact, and the build's status."""
    request, profile = plan.request, plan.profile
    chosen = selection.chosen
    artifacts = tuple(_artifact_report(plan, c, selection.tried(i)) for i, c in enumerate(chosen))
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
        notes=notes,
        duration_s=time.perf_counter() - started,
    )


def _artifact_report(
    plan: Plan, candidate: Candidate, tried: tuple[Candidate, ...]
) -> rpt.ArtifactReport:
    profile, content, stats = plan.profile, candidate.content, candidate.stats
    hw = profile.hardware
    # Estimates: MACs over the board's sustained throughput, int8 and float ops separately.
    est_ms = (stats.int_macs / hw.int8_gmacs + stats.float_macs / hw.fp32_gmacs) / 1e6
    est_ram_mb = (len(content) + stats.arena_bytes) / 2**20
    acc = candidate.accuracy
    checks = check_budgets(
        profile,
        accuracy_drop_pt=None if acc is None else acc.drop_pt,
        accuracy_detail="" if acc is None else f"{acc.metric} on {acc.data}",
        model_mb=len(content) / 2**20,
        est_ram_mb=est_ram_mb,
        est_latency_ms=est_ms,
        float_ops=stats.float_ops,
        ops_present=tuple(sorted({op.op for op in stats.ops})),
    )
    return rpt.ArtifactReport(
        artifact=rpt.ArtifactInfo(
            file=candidate.file_name,
            format=candidate.format,
            quantization=candidate.artifact.scheme,
            per_channel=profile.build.per_channel,
            input_dtype=candidate.io.inputs[0].dtype,
            output_dtype=candidate.io.outputs[0].dtype,
            calibration_method=candidate.calibration_method,
        ),
        accuracy=candidate.accuracy or NOT_MEASURED,
        sizes=_size_figures(candidate),
        latency=_latency_figures(candidate, est_ms, plan),
        macs=stats.macs,
        params=stats.params,
        est_ram_mb=est_ram_mb,
        pruning=_pruning_figures(candidate, tried, profile),
        fallback=_fallback_figures(candidate),
        ops=tuple(
            rpt.OpTableRow(op=r.op, precision=r.precision, count=r.count, macs=r.macs)
            for r in stats.table()
        ),
        float_ops=stats.float_ops,
        refused_ops=candidate.artifact.refused_ops,
        checks=tuple(_check_row(c) for c in checks),
        warnings=candidate.warnings,
    )


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


def _latency_figures(candidate: Candidate, est_ms: float, plan: Plan) -> LatencyFigures:
    host = candidate.host
    return LatencyFigures(
        est_target_ms=est_ms,
        est_target_fp32_ms=candidate.baseline.stats.macs / plan.profile.hardware.fp32_gmacs / 1e6,
        host_p50_ms=None if host is None else host.artifact.p50_ms,
        host_p50_fp32_ms=None if host is None else host.fp32.p50_ms,
        host_ratio=None if host is None else host.artifact.p50_ms / host.fp32.p50_ms,
        host_threads=plan.host_threads,
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
