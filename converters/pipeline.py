"""``edgekit build``: load -> quantize -> export -> validate -> check budgets -> bundle."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from edgekit.converters import report as rpt
from edgekit.converters.budgets import check_budgets
from edgekit.converters.source import SourceModel, load_source
from edgekit.converters.tflite_exporter import TFLiteArtifact, convert, convert_float
from edgekit.converters.tflite_inspect import ModelStats, inspect_tflite
from edgekit.converters.validate import Accuracy, compare, host_latency
from edgekit.runtime.backend import open_backend

from edgekit._version import __version__
from edgekit.bundle import write_bundle
from edgekit.datasets import LabelledData, PixelRange, load_data
from edgekit.errors import ConversionError, DataError
from edgekit.manifest import Artifact, BuildMetrics, FileEntry, Manifest, ProfileRef, TensorSpec
from edgekit.manifest import SourceModel as SourceRef
from edgekit.profiles import DeviceProfile, ModelFormat, Quantization
from edgekit.progress import Progress, SilentProgress
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


@dataclass
class _Validation:
    """What validating the artifact against the fp32 baseline found."""

    stats: ModelStats
    fp32_stats: ModelStats
    data: LabelledData | None = None
    accuracy: Accuracy | None = None
    fp32_outputs: np.ndarray | None = None
    host: LatencyStats | None = None
    host_fp32: LatencyStats | None = None
    warnings: list[str] = field(default_factory=list)


def build(request: BuildRequest, *, progress: Progress | None = None) -> rpt.BuildReport:
    """Run the pipeline; the bundle is written only if every check passes or is overridden."""
    progress = progress or SilentProgress()
    started = time.perf_counter()
    _check_request(request)
    build_cfg = request.profile.build
    with tempfile.TemporaryDirectory(prefix="edgekit-build-") as work:
        source = load_source(request.model, work_dir=Path(work))
        spec = _single_input(source, request.model)
        calibration = _load(request.calibration, "calibration", spec, request.pixel_range)
        evaluation = _load(request.eval_data, "eval", spec, request.pixel_range)
        if calibration is not None:
            calibration = calibration.take(build_cfg.calibration_samples)
        fp32 = convert_float(source.saved_model_dir)
        artifact = convert(
            source.saved_model_dir,
            build_cfg,
            calibration=None if calibration is None else calibration.x,
            progress=progress,
        )
    validation = _validate(request, fp32, artifact, calibration, evaluation, progress)
    report = _report(request, source, fp32, artifact, validation, started)
    if report.status != "over_budget":
        _write(request, source, artifact.content, report, validation)
    return report


def _check_request(request: BuildRequest) -> None:
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


def _single_input(source: SourceModel, path: Path) -> TensorSpec:
    if len(source.inputs) != 1 or len(source.outputs) != 1:
        raise ConversionError(
            f"{path}: models with {len(source.inputs)} inputs and {len(source.outputs)} outputs "
            "are not supported yet (one of each is)"
        )
    return source.inputs[0]


def _load(
    path: Path | None, role: str, spec: TensorSpec, pixel_range: PixelRange
) -> LabelledData | None:
    return None if path is None else load_data(path, role=role, spec=spec, pixel_range=pixel_range)


def _validate(
    request: BuildRequest,
    fp32: bytes,
    artifact: TFLiteArtifact,
    calibration: LabelledData | None,
    evaluation: LabelledData | None,
    progress: Progress,
) -> _Validation:
    result = _Validation(stats=inspect_tflite(artifact.content), fp32_stats=inspect_tflite(fp32))
    threads = _host_threads(request.profile)
    data, label = evaluation, "eval data"
    if data is None and calibration is not None:
        data, label = calibration.without_labels(), "calibration data (no --eval)"
        result.warnings.append(
            "no --eval data: accuracy is agreement with fp32 on calibration data"
        )
    if data is None:
        result.warnings.append("no --eval or --calibration data: accuracy was not measured")
        return result
    comparison = compare(
        fp32, artifact.content, data, data_label=label, threads=threads, progress=progress
    )
    result.data, result.accuracy = data, comparison.accuracy
    result.fp32_outputs = comparison.fp32_outputs
    if request.latency_runs > 0:
        with progress.task("Measuring host latency", total=2) as task:
            result.host_fp32 = host_latency(
                fp32, data.x[0], threads=threads, runs=request.latency_runs
            )
            task.advance()
            result.host = host_latency(
                artifact.content, data.x[0], threads=threads, runs=request.latency_runs
            )
            task.advance()
    if artifact.refused_ops:
        result.warnings.append(
            f"int8-only conversion refused {', '.join(artifact.refused_ops)}; kept in float"
        )
    if result.stats.float_ops and request.profile.build.quantization is Quantization.INT8:
        result.warnings.append(
            "ops left in float in the int8 artifact: " + ", ".join(result.stats.float_ops)
        )
    return result


def _host_threads(profile: DeviceProfile) -> int:
    return max(1, min(profile.runtime.threads, os.cpu_count() or 1))


def _report(
    request: BuildRequest,
    source: SourceModel,
    fp32: bytes,
    artifact: TFLiteArtifact,
    v: _Validation,
    started: float,
) -> rpt.BuildReport:
    profile, content, stats = request.profile, artifact.content, v.stats
    hw = profile.hardware
    # Estimates: MACs over the board's sustained throughput, int8 and float ops separately.
    est_ms = (stats.int_macs / hw.int8_gmacs + stats.float_macs / hw.fp32_gmacs) / 1e6
    est_ram_mb = (len(content) + stats.arena_bytes) / 2**20
    acc = v.accuracy
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
    host, host_fp32 = v.host, v.host_fp32
    return rpt.BuildReport(
        status=status,
        bundle_id=f"{source.name}-{profile.name}-{_short_digest(content)}",
        bundle_dir=None if status == "over_budget" else str(request.out_dir.resolve()),
        model=rpt.ModelRef(path=str(request.model), kind=source.kind, sha256=source.sha256),
        profile=rpt.ProfileRef(name=profile.name, source=profile.source, digest=profile.digest),
        artifact=rpt.ArtifactInfo(
            file=MODEL_FILE,
            format="tflite",
            quantization=artifact.scheme.value,
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
        ),
        sizes=rpt.SizeFigures(
            fp32_bytes=len(fp32), model_bytes=len(content), ratio=len(content) / len(fp32)
        ),
        latency=rpt.LatencyFigures(
            est_target_ms=est_ms,
            est_target_fp32_ms=v.fp32_stats.macs / hw.fp32_gmacs / 1e6,
            host_p50_ms=None if host is None else host.p50_ms,
            host_p50_fp32_ms=None if host_fp32 is None else host_fp32.p50_ms,
            host_ratio=None
            if host is None or host_fp32 is None
            else host.p50_ms / host_fp32.p50_ms,
            host_threads=_host_threads(profile),
        ),
        macs=stats.macs,
        params=stats.params,
        est_ram_mb=est_ram_mb,
        ops=tuple(
            rpt.OpTableRow(op=r.op, precision=r.precision, count=r.count, macs=r.macs)
            for r in stats.table()
        ),
        float_ops=stats.float_ops,
        refused_ops=artifact.refused_ops,
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
        warnings=tuple(v.warnings),
        duration_s=time.perf_counter() - started,
    )


def _write(
    request: BuildRequest,
    source: SourceModel,
    content: bytes,
    report: rpt.BuildReport,
    v: _Validation,
) -> None:
    files: dict[str, bytes] = {MODEL_FILE: content, REPORT_FILE: report.to_json().encode()}
    if v.data is not None and v.fp32_outputs is not None:
        files[EVAL_SAMPLE_FILE] = _eval_sample(v.data, v.fp32_outputs, request.eval_sample_size)
    backend = open_backend("litert", content)
    acc = report.accuracy
    manifest = Manifest(
        bundle_id=report.bundle_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        edgekit_version=__version__,
        profile=ProfileRef(
            name=request.profile.name, digest=request.profile.digest, source=request.profile.source
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
        ),
        budget_override=report.status == "over_budget_overridden",
        eval_sample=EVAL_SAMPLE_FILE if EVAL_SAMPLE_FILE in files else None,
        build_report=REPORT_FILE,
    )
    write_bundle(request.out_dir, files, manifest)


def _eval_sample(data: LabelledData, fp32_outputs: np.ndarray, size: int) -> bytes:
    """A small labelled sample for on-device accuracy, with the fp32 outputs as reference."""
    keep = data.sample_indices(size)
    arrays = {"x": data.x[keep].astype(np.float32), "reference": fp32_outputs[keep]}
    if data.y is not None:
        arrays["y"] = data.y[keep]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _short_digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:12]
