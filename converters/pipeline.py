"""``edgekit build``: load -> prune (-> fine-tune) -> quantize -> export -> validate -> bundle."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from edgekit._version import __version__
from edgekit.bundle import write_bundle
from edgekit.converters import report as rpt
from edgekit.converters.budgets import check_budgets
from edgekit.converters.prune import PruneOutcome, PruneSpec, prune
from edgekit.converters.source import SourceModel, load_source
from edgekit.converters.tflite_exporter import TFLiteArtifact, convert, convert_float
from edgekit.converters.tflite_inspect import ModelStats, inspect_tflite
from edgekit.converters.validate import Accuracy, compare, host_latency
from edgekit.datasets import LabelledData, PixelRange, load_data
from edgekit.errors import ConversionError, DataError
from edgekit.manifest import (
    Artifact,
    BuildMetrics,
    FileEntry,
    Manifest,
    ProfileRef,
    PruningInfo,
    TensorSpec,
)
from edgekit.manifest import SourceModel as SourceRef
from edgekit.profiles import DeviceProfile, ModelFormat, PruneKind, Quantization
from edgekit.progress import Progress, SilentProgress
from edgekit.runtime.backend import open_backend
from edgekit.schema import LatencyStats

MODEL_FILE = "model.tflite"
EVAL_SAMPLE_FILE = "eval_sample.npz"
REPORT_FILE = "build_report.json"


@dataclass(frozen=True)
class BuildRequest:
    """What to build, for which profile, from which data, and where to put it."""

    model: Path
    profile: DeviceProfile
    out_dir: Path
    calibration: Path | None = None
    eval_data: Path | None = None
    pixel_range: PixelRange = PixelRange.UNIT
    allow_over_budget: bool = False
    eval_sample_size: int = 200
    # Host-latency runs per artifact; 0 skips the measurement.
    latency_runs: int = 50
    # Pruning: None takes the profile's choice.
    prune: PruneKind | None = None
    sparsity: float | None = None
    train_data: Path | None = None
    epochs: int = 2
    auto_sparsity: bool = False


@dataclass(frozen=True)
class _Data:
    calibration: LabelledData | None
    evaluation: LabelledData | None
    train: LabelledData | None


@dataclass
class _Candidate:
    """One artifact the pipeline made, with what validating it found."""

    artifact: TFLiteArtifact
    stats: ModelStats
    pruning: PruneOutcome | None = None
    data: LabelledData | None = None
    accuracy: Accuracy | None = None
    fp32_outputs: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)


def build(request: BuildRequest, *, progress: Progress | None = None) -> rpt.BuildReport:
    """Run the pipeline; the bundle is written only if every check passes or is overridden."""
    progress = progress or SilentProgress()
    started = time.perf_counter()
    spec = _check_request(request)
    with tempfile.TemporaryDirectory(prefix="edgekit-build-") as tmp:
        work = Path(tmp)
        source = load_source(request.model, work_dir=work)
        data = _load_data(request, _single_input(source, request.model))
        fp32 = convert_float(source.saved_model_dir)
        fp32_stats = inspect_tflite(fp32)
        tries = spec.step_back() if request.auto_sparsity and spec.active else [spec.sparsity]
        attempts: list[_Candidate] = []
        for sparsity in tries:
            attempt = _make_candidate(
                request, source, dataclasses.replace(spec, sparsity=sparsity), data, fp32, work,
                progress,
            )  # fmt: skip
            attempts.append(attempt)
            if _within_accuracy_budget(attempt, request.profile):
                break
    chosen = attempts[-1]
    if not _within_accuracy_budget(chosen, request.profile):  # nothing met it: the best found
        chosen = min(attempts, key=_drop)
    host = _host_latencies(request, fp32, chosen, progress)
    report = _report(request, source, fp32, fp32_stats, chosen, attempts, host, started)
    if report.status != "over_budget":
        _write(request, source, chosen, report)
    return report


def _check_request(request: BuildRequest) -> PruneSpec:
    profile = request.profile
    if ModelFormat.TFLITE not in profile.build.formats:
        wanted = ", ".join(profile.build.formats)
        raise ConversionError(
            f"profile {profile.name} asks for {wanted}; this version of edgekit builds tflite only"
        )
    if profile.build.quantization is Quantization.INT8 and request.calibration is None:
        raise DataError(
            f"profile {profile.name} quantizes to int8, which needs calibration data: "
            "pass --calibration DATA (.npz with x, or an image folder)"
        )
    kind = request.prune or profile.build.prune
    sparsity = profile.build.sparsity if request.sparsity is None else request.sparsity
    if request.sparsity is not None and kind is PruneKind.NONE:
        kind = PruneKind.MAGNITUDE  # asking for a sparsity means asking for pruning
    spec = PruneSpec(kind=kind, sparsity=sparsity)
    if request.train_data is not None and not spec.active:
        raise DataError("--train is for fine-tuning after pruning; pass --prune and --sparsity")
    if request.auto_sparsity and not spec.active:
        raise DataError("--auto-sparsity needs pruning: pass --prune and --sparsity")
    if request.auto_sparsity and request.eval_data is None and request.calibration is None:
        raise DataError("--auto-sparsity needs --eval data to measure accuracy")
    if request.epochs < 1:
        raise DataError(f"--epochs must be at least 1, got {request.epochs}")
    return spec


def _single_input(source: SourceModel, path: Path) -> TensorSpec:
    if len(source.inputs) != 1 or len(source.outputs) != 1:
        raise ConversionError(
            f"{path}: models with {len(source.inputs)} inputs and {len(source.outputs)} outputs "
            "are not supported yet (one of each is)"
        )
    return source.inputs[0]


def _load_data(request: BuildRequest, spec: TensorSpec) -> _Data:
    def load(path: Path | None, role: str) -> LabelledData | None:
        if path is None:
            return None
        return load_data(path, role=role, spec=spec, pixel_range=request.pixel_range)

    calibration = load(request.calibration, "calibration")
    if calibration is not None:
        calibration = calibration.take(request.profile.build.calibration_samples)
    return _Data(calibration, load(request.eval_data, "eval"), load(request.train_data, "train"))


def _make_candidate(
    request: BuildRequest,
    source: SourceModel,
    spec: PruneSpec,
    data: _Data,
    fp32: bytes,
    work: Path,
    progress: Progress,
) -> _Candidate:
    pruning = None
    model_dir = source.saved_model_dir
    pruned_fp32 = None
    if spec.active:
        pruning = prune(
            source, spec, train=data.train, epochs=request.epochs, work_dir=work, progress=progress
        )
        model_dir = pruning.saved_model_dir
        pruned_fp32 = convert_float(model_dir)
    artifact = convert(
        model_dir,
        request.profile.build,
        calibration=None if data.calibration is None else data.calibration.x,
        progress=progress,
    )
    candidate = _Candidate(
        artifact=artifact, stats=inspect_tflite(artifact.content), pruning=pruning
    )
    _validate(candidate, request, fp32, pruned_fp32, data, progress)
    return candidate


def _validate(
    candidate: _Candidate,
    request: BuildRequest,
    fp32: bytes,
    pruned_fp32: bytes | None,
    data: _Data,
    progress: Progress,
) -> None:
    evaluation, label = data.evaluation, "eval data"
    if evaluation is None and data.calibration is not None:
        evaluation, label = data.calibration.without_labels(), "calibration data (no --eval)"
        candidate.warnings.append("no --eval data: accuracy is agreement with fp32 on calibration")
    artifact = candidate.artifact
    if artifact.refused_ops:
        candidate.warnings.append(
            f"int8-only conversion refused {', '.join(artifact.refused_ops)}; kept in float"
        )
    if candidate.stats.float_ops and request.profile.build.quantization is Quantization.INT8:
        candidate.warnings.append(
            "ops left in float in the int8 artifact: " + ", ".join(candidate.stats.float_ops)
        )
    if evaluation is None:
        candidate.warnings.append("no --eval or --calibration data: accuracy was not measured")
        return
    comparison = compare(
        fp32,
        artifact.content,
        evaluation,
        data_label=label,
        pruned_fp32_model=pruned_fp32,
        threads=_host_threads(request.profile),
        progress=progress,
    )
    candidate.data = evaluation
    candidate.accuracy = comparison.accuracy
    candidate.fp32_outputs = comparison.fp32_outputs


def _within_accuracy_budget(candidate: _Candidate, profile: DeviceProfile) -> bool:
    acc = candidate.accuracy
    return acc is None or acc.drop_pt is None or acc.drop_pt <= profile.budgets.max_accuracy_drop_pt


def _drop(candidate: _Candidate) -> float:
    acc = candidate.accuracy
    return float("inf") if acc is None or acc.drop_pt is None else acc.drop_pt


def _host_threads(profile: DeviceProfile) -> int:
    return max(1, min(profile.runtime.threads, os.cpu_count() or 1))


def _host_latencies(
    request: BuildRequest, fp32: bytes, chosen: _Candidate, progress: Progress
) -> tuple[LatencyStats | None, LatencyStats | None]:
    """(fp32, artifact) p50 etc. on this machine, one sample at a time."""
    if chosen.data is None or request.latency_runs <= 0:
        return None, None
    threads, sample, runs = _host_threads(request.profile), chosen.data.x[0], request.latency_runs
    with progress.task("Measuring host latency", total=2) as task:
        base = host_latency(fp32, sample, threads=threads, runs=runs)
        task.advance()
        final = host_latency(chosen.artifact.content, sample, threads=threads, runs=runs)
        task.advance()
    return base, final


def _report(
    request: BuildRequest,
    source: SourceModel,
    fp32: bytes,
    fp32_stats: ModelStats,
    chosen: _Candidate,
    attempts: list[_Candidate],
    host: tuple[LatencyStats | None, LatencyStats | None],
    started: float,
) -> rpt.BuildReport:
    profile, content, stats = request.profile, chosen.artifact.content, chosen.stats
    hw = profile.hardware
    # Estimates: MACs over the board's sustained throughput, int8 and float ops separately.
    est_ms = (stats.int_macs / hw.int8_gmacs + stats.float_macs / hw.fp32_gmacs) / 1e6
    est_ram_mb = (len(content) + stats.arena_bytes) / 2**20
    acc = chosen.accuracy
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
    if not any(c.status == "fail" for c in checks):
        status = "ok"
    else:
        status = "over_budget_overridden" if request.allow_over_budget else "over_budget"
    io_specs = open_backend("litert", content)
    host_fp32, host_final = host
    fp32_gz, final_gz = _gzip_size(fp32), _gzip_size(content)
    return rpt.BuildReport(
        status=status,
        bundle_id=f"{source.name}-{profile.name}-{hashlib.sha256(content).hexdigest()[:12]}",
        bundle_dir=None if status == "over_budget" else str(request.out_dir.resolve()),
        model=rpt.ModelRef(path=str(request.model), kind=source.kind, sha256=source.sha256),
        profile=rpt.ProfileRef(name=profile.name, source=profile.source, digest=profile.digest),
        artifact=rpt.ArtifactInfo(
            file=MODEL_FILE,
            format="tflite",
            quantization=chosen.artifact.scheme.value,
            per_channel=profile.build.per_channel,
            input_dtype=io_specs.inputs[0].dtype,
            output_dtype=io_specs.outputs[0].dtype,
        ),
        accuracy=rpt.AccuracyFigures(
            metric=None if acc is None else acc.metric,
            fp32=None if acc is None else acc.fp32,
            quantized=None if acc is None else acc.quantized,
            drop_pt=None if acc is None else acc.drop_pt,
            samples=0 if acc is None else acc.samples,
            data=None if acc is None else acc.data,
            pruned_fp32=None if acc is None else acc.pruned_fp32,
        ),
        sizes=rpt.SizeFigures(
            fp32_bytes=len(fp32),
            model_bytes=len(content),
            ratio=len(content) / len(fp32),
            fp32_gzip_bytes=fp32_gz,
            gzip_bytes=final_gz,
            gzip_ratio=final_gz / fp32_gz,
        ),
        latency=rpt.LatencyFigures(
            est_target_ms=est_ms,
            est_target_fp32_ms=fp32_stats.macs / hw.fp32_gmacs / 1e6,
            host_p50_ms=None if host_final is None else host_final.p50_ms,
            host_p50_fp32_ms=None if host_fp32 is None else host_fp32.p50_ms,
            host_ratio=(
                None
                if host_final is None or host_fp32 is None
                else host_final.p50_ms / host_fp32.p50_ms
            ),
            host_threads=_host_threads(profile),
        ),
        macs=stats.macs,
        params=stats.params,
        est_ram_mb=est_ram_mb,
        pruning=_pruning_figures(chosen, attempts, fp32_stats, profile),
        ops=tuple(
            rpt.OpTableRow(op=r.op, precision=r.precision, count=r.count, macs=r.macs)
            for r in stats.table()
        ),
        float_ops=stats.float_ops,
        refused_ops=chosen.artifact.refused_ops,
        checks=tuple(
            rpt.CheckRow(
                name=c.name,
                value=c.value,
                limit=c.limit,
                unit=c.unit,
                status=c.status,
                detail=c.detail,
            )
            for c in checks
        ),
        warnings=tuple(chosen.warnings),
        duration_s=time.perf_counter() - started,
    )


def _pruning_figures(
    chosen: _Candidate, attempts: list[_Candidate], before: ModelStats, profile: DeviceProfile
) -> rpt.PruningFigures | None:
    pruning = chosen.pruning
    if pruning is None:
        return None
    after = chosen.stats
    return rpt.PruningFigures(
        kind="magnitude" if pruning.spec.kind is PruneKind.MAGNITUDE else "structured",
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
                sparsity=a.pruning.spec.sparsity if a.pruning else 0.0,
                drop_pt=a.accuracy.drop_pt if a.accuracy else None,
                within_budget=_within_accuracy_budget(a, profile),
            )
            for a in attempts
        ),
    )


def _write(
    request: BuildRequest, source: SourceModel, chosen: _Candidate, report: rpt.BuildReport
) -> None:
    content = chosen.artifact.content
    files: dict[str, bytes] = {MODEL_FILE: content, REPORT_FILE: report.to_json().encode()}
    if chosen.data is not None and chosen.fp32_outputs is not None:
        files[EVAL_SAMPLE_FILE] = _eval_sample(
            chosen.data, chosen.fp32_outputs, request.eval_sample_size
        )
    backend = open_backend("litert", content)
    acc = report.accuracy
    manifest = Manifest(
        bundle_id=report.bundle_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        edgekit_version=__version__,
        profile=ProfileRef(
            name=request.profile.name,
            digest=request.profile.digest,
            source=request.profile.source,
        ),
        source_model=SourceRef(name=request.model.name, kind=source.kind, sha256=source.sha256),
        artifacts=(
            Artifact(
                file=MODEL_FILE,
                format="tflite",
                quantization=report.artifact.quantization,
                per_channel=report.artifact.per_channel,
                inputs=backend.inputs,
                outputs=backend.outputs,
            ),
        ),
        preferred=MODEL_FILE,
        files={name: FileEntry.of_bytes(data) for name, data in files.items()},
        metrics=BuildMetrics(
            metric=acc.metric,
            fp32=acc.fp32,
            quantized=acc.quantized,
            drop_pt=acc.drop_pt,
            eval_samples=acc.samples,
            fp32_bytes=report.sizes.fp32_bytes,
            model_bytes=report.sizes.model_bytes,
            macs=report.macs,
            params=report.params,
            est_latency_ms=report.latency.est_target_ms,
            est_ram_mb=report.est_ram_mb,
            host_p50_ms_fp32=report.latency.host_p50_fp32_ms,
            host_p50_ms=report.latency.host_p50_ms,
            gzip_bytes=report.sizes.gzip_bytes,
        ),
        pruning=_pruning_info(report.pruning),
        budget_override=report.status == "over_budget_overridden",
        eval_sample=EVAL_SAMPLE_FILE if EVAL_SAMPLE_FILE in files else None,
        build_report=REPORT_FILE,
    )
    write_bundle(request.out_dir, files, manifest)


def _pruning_info(figures: rpt.PruningFigures | None) -> PruningInfo | None:
    if figures is None:
        return None
    return PruningInfo(
        kind=figures.kind,
        target=figures.target,
        achieved=figures.artifact_sparsity,
        schedule=figures.schedule,
        tensors={w.tensor: w.sparsity for w in figures.artifact_weights},
        params_before=figures.params_before,
        params_after=figures.params_after,
        macs_before=figures.macs_before,
        macs_after=figures.macs_after,
    )


def _eval_sample(data: LabelledData, fp32_outputs: np.ndarray, size: int) -> bytes:
    """A small labelled sample for on-device accuracy, with the fp32 outputs as reference."""
    keep = data.sample_indices(size)
    arrays = {"x": data.x[keep].astype(np.float32), "reference": fp32_outputs[keep]}
    if data.y is not None:
        arrays["y"] = data.y[keep]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _gzip_size(content: bytes) -> int:
    return len(gzip.compress(content, compresslevel=9, mtime=0))
