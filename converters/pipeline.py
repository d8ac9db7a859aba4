"""``edgekit build``: load -> prune (-> fine-tune) -> quantize -> export -> validate -> bundle.

Per format the profile asks for (and the model can be built to), an :class:`Exporter` makes the
fp32 baseline and the quantized artifact; both run in the real interpreter on the eval data. When
int8 misses the accuracy budget, the layers that cost most stay float until it fits. Budgets are
checked per artifact; the bundle is written only when every artifact passes, or the user says so.
"""

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
from typing import Any

import numpy as np

from edgekit import metrics
from edgekit._version import __version__
from edgekit.bundle import write_bundle
from edgekit.converters import report as rpt
from edgekit.converters.budgets import check_budgets
from edgekit.converters.fallback import FallbackOutcome, keep_layers_float
from edgekit.converters.formats import Exporter, Quantized
from edgekit.converters.model_stats import ModelStats
from edgekit.converters.onnx_exporter import OnnxExporter, keras_to_onnx
from edgekit.converters.onnx_source import OnnxModel, fix_shapes
from edgekit.converters.prune import PruneOutcome, PruneSpec, prune
from edgekit.converters.source import SourceModel, load_source
from edgekit.converters.tflite_exporter import TFLiteExporter
from edgekit.converters.validate import Accuracy, accuracy_of, host_latency, outputs_of
from edgekit.datasets import LabelledData, load_data
from edgekit.errors import ConversionError, DataError
from edgekit.manifest import (
    Artifact,
    BuildMetrics,
    FileEntry,
    Manifest,
    ProfileRef,
    PruningInfo,
    RuntimeHints,
)
from edgekit.manifest import SourceModel as SourceRef
from edgekit.profiles import DeviceProfile
from edgekit.progress import Progress, SilentProgress
from edgekit.runtime.backend import open_backend
from edgekit.schema import LatencyStats
from edgekit.signing import key_id, load_private_key, signature_file
from edgekit.vocab import BuildStatus, IODtype, ModelFormat, PixelRange, PruneKind, Quantization

EVAL_SAMPLE_FILE = "eval_sample.npz"
REPORT_FILE = "build_report.json"
# Samples the accuracy fallback compares layer by layer.
RANKING_SAMPLES = 64


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
    # ONNX inputs with dynamic axes: input name -> shape of one sample (no batch axis).
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # None takes the profile's accuracy_fallback.
    accuracy_fallback: bool | None = None
    # Ed25519 private key (PEM) to sign the manifest with.
    sign_key: Path | None = None


@dataclass(frozen=True)
class _Data:
    calibration: LabelledData | None
    evaluation: LabelledData | None
    train: LabelledData | None

    def for_accuracy(self) -> tuple[LabelledData | None, str]:
        """Labelled eval data, else calibration data compared with fp32 (agreement)."""
        if self.evaluation is not None:
            return self.evaluation, "eval data"
        if self.calibration is not None:
            return self.calibration.without_labels(), "calibration data (no --eval)"
        return None, ""


@dataclass
class _Built:
    """One artifact of one format, validated."""

    exporter: Exporter
    baseline: Exporter  # the unpruned model in the same format
    quantized: Quantized
    stats: ModelStats
    pruning: PruneOutcome | None = None
    accuracy: Accuracy | None = None
    fallback: FallbackOutcome | None = None
    plain_drop_pt: float | None = None
    warnings: list[str] = field(default_factory=list)
    host: tuple[LatencyStats | None, LatencyStats | None] = (None, None)


class _Reference:
    """fp32 outputs of each format's unpruned baseline on the accuracy data, computed once."""

    def __init__(self, data: LabelledData | None, threads: int, progress: Progress) -> None:
        self.data = data
        self._threads = threads
        self._progress = progress
        self._outputs: dict[ModelFormat, np.ndarray] = {}

    def outputs(self, exporter: Exporter) -> np.ndarray:
        if exporter.format not in self._outputs:
            assert self.data is not None
            self._outputs[exporter.format] = self.run(exporter.float_model(), exporter, "fp32")
        return self._outputs[exporter.format]

    def run(self, content: bytes, exporter: Exporter, label: str) -> np.ndarray:
        assert self.data is not None
        return outputs_of(
            content,
            self.data,
            backend=exporter.backend,
            threads=self._threads,
            label=f"{label} ({exporter.format.value})",
            progress=self._progress,
        )


def build(request: BuildRequest, *, progress: Progress | None = None) -> rpt.BuildReport:
    """Run the pipeline; the bundle is written only if every check passes or is overridden."""
    progress = progress or SilentProgress()
    started = time.perf_counter()
    spec = _check_request(request)
    # Loaded before hours of conversion, so a wrong key path fails at once.
    signer = load_private_key(request.sign_key) if request.sign_key is not None else None
    with tempfile.TemporaryDirectory(prefix="edgekit-build-") as tmp:
        work = Path(tmp)
        source = load_source(request.model, work_dir=work)
        formats = _formats(request.profile, source)
        data = _load_data(request, source)
        source = _pin_onnx_shapes(source, data, request.input_shapes)
        accuracy_data, data_label = data.for_accuracy()
        reference = _Reference(accuracy_data, _host_threads(request.profile), progress)
        baselines = {fmt: _exporter(fmt, source, None, work) for fmt in formats}
        tries = spec.step_back() if request.auto_sparsity and spec.active else [spec.sparsity]
        attempts: list[list[_Built]] = []
        for sparsity in tries:
            current = dataclasses.replace(spec, sparsity=sparsity)
            pruning = None
            if current.active:
                pruning = prune(source, current, train=data.train, epochs=request.epochs,
                                work_dir=work, progress=progress)  # fmt: skip
            built = [
                _build_format(
                    request,
                    baselines[fmt],
                    _exporter(fmt, source, pruning, work),
                    pruning,
                    data,
                    reference,
                    data_label,
                    progress,
                )
                for fmt in formats
            ]
            attempts.append(built)
            if all(_within_accuracy_budget(b, request.profile) for b in built):
                break
        chosen = attempts[-1]
        if not all(_within_accuracy_budget(b, request.profile) for b in chosen):
            chosen = min(attempts, key=lambda group: max(_drop(b) for b in group))
        for b in chosen:
            b.host = _host_latencies(request, b, accuracy_data, progress)
        notes = _notes(baselines)
    report = _report(request, source, chosen, attempts, notes, started)
    if report.status is not BuildStatus.OVER_BUDGET:
        _write(request, source, chosen, report, reference, signer)
    return report


def _check_request(request: BuildRequest) -> PruneSpec:
    profile = request.profile
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
    if request.epochs < 1:
        raise DataError(f"--epochs must be at least 1, got {request.epochs}")
    return spec


def _formats(profile: DeviceProfile, source: SourceModel) -> list[ModelFormat]:
    """The formats to build: the profile's, in preference order, that this model can become."""
    producible = {
        # The LiteRT path feeds one input; several-input models go the ONNX way.
        ModelFormat.TFLITE: source.saved_model_dir is not None and len(source.inputs) == 1,
        ModelFormat.ONNX: source.onnx is not None or source.is_keras,
    }
    possible = [fmt for fmt in profile.build.formats if producible[fmt]]
    if not possible:
        wanted = ", ".join(f.value for f in profile.build.formats)
        can = "onnx" if source.onnx is not None or len(source.inputs) > 1 else "tflite"
        raise ConversionError(
            f"profile {profile.name} builds {wanted}, but a {source.kind} model can only become "
            f"{can} here; use a profile that lists {can}"
        )
    return possible if profile.build.build_all_formats else possible[:1]


def _load_data(request: BuildRequest, source: SourceModel) -> _Data:
    def load(path: Path | None, role: str) -> LabelledData | None:
        if path is None:
            return None
        return load_data(path, role=role, specs=source.inputs, pixel_range=request.pixel_range)

    calibration = load(request.calibration, "calibration")
    if calibration is not None:
        calibration = calibration.take(request.profile.build.calibration_samples)
    return _Data(calibration, load(request.eval_data, "eval"), load(request.train_data, "train"))


def _pin_onnx_shapes(
    source: SourceModel, data: _Data, given: dict[str, tuple[int, ...]]
) -> SourceModel:
    """Dynamic non-batch axes of an ONNX model take the data's (or --input-shape's) sizes."""
    if source.onnx is None or not any(
        None in spec.shape[1:] for spec in source.onnx.inputs
    ):  # fmt: skip
        return source
    shapes = dict(given)
    sample = data.calibration or data.evaluation
    for i, spec in enumerate(source.onnx.inputs):
        if spec.name not in shapes and sample is not None:
            shapes[spec.name] = tuple(int(d) for d in sample.xs[i].shape[1:])
    missing = [s.name for s in source.onnx.inputs if None in s.shape[1:] and s.name not in shapes]
    if missing:
        raise DataError(
            f"input(s) {', '.join(missing)} have dynamic axes: pass calibration data or "
            "--input-shape NAME:DIMxDIM..."
        )
    fixed = fix_shapes(source.onnx, shapes)
    return dataclasses.replace(source, onnx=fixed, inputs=fixed.inputs)


def _exporter(
    fmt: ModelFormat, source: SourceModel, pruning: PruneOutcome | None, work: Path
) -> Exporter:
    if fmt is ModelFormat.TFLITE:
        saved_model = pruning.saved_model_dir if pruning else source.saved_model_dir
        assert saved_model is not None  # _formats only lists tflite for SavedModel sources
        return TFLiteExporter(saved_model)
    onnx_model: OnnxModel | None
    if pruning is not None:
        onnx_model = pruning.onnx
        if onnx_model is None and pruning.keras_path is not None:
            onnx_model = keras_to_onnx(pruning.keras_path, work)
    else:
        onnx_model = source.onnx if source.onnx is not None else keras_to_onnx(source.path, work)
    assert onnx_model is not None
    return OnnxExporter(onnx_model)


def _build_format(
    request: BuildRequest,
    baseline: Exporter,
    exporter: Exporter,
    pruning: PruneOutcome | None,
    data: _Data,
    reference: _Reference,
    data_label: str,
    progress: Progress,
) -> _Built:
    build_cfg = request.profile.build
    quantized = exporter.quantize(build_cfg, data.calibration, progress=progress)
    built = _Built(exporter, baseline, quantized, exporter.inspect(quantized.content), pruning)
    if quantized.refused_ops:
        built.warnings.append(
            f"int8-only conversion refused {', '.join(quantized.refused_ops)}; kept in float"
        )
    if reference.data is None:
        built.warnings.append("no --eval or --calibration data: accuracy was not measured")
        return built
    if data.evaluation is None:
        built.warnings.append("no --eval data: accuracy is agreement with fp32 on calibration data")
    ref = reference.outputs(baseline)
    pruned = None
    if pruning is not None:
        pruned = reference.run(exporter.float_model(), exporter, "pruned fp32")

    def evaluate(content: bytes) -> Accuracy:
        test = reference.run(content, exporter, "quantized")
        assert reference.data is not None
        return accuracy_of(ref, test, reference.data, data_label=data_label, pruned=pruned)

    built.accuracy = evaluate(quantized.content)
    built.plain_drop_pt = built.accuracy.drop_pt
    if _fallback_applies(request, built):
        assert reference.data is not None
        outcome = keep_layers_float(
            exporter,
            build_cfg,
            data.calibration,
            first=quantized,
            first_accuracy=built.accuracy,
            sample=reference.data.take(RANKING_SAMPLES),
            evaluate=evaluate,
            budget_pt=request.profile.budgets.max_accuracy_drop_pt,
            progress=progress,
        )
        built.fallback = outcome
        built.quantized = outcome.quantized
        built.accuracy = outcome.accuracy
        built.stats = exporter.inspect(outcome.quantized.content)
    if built.stats.float_ops and build_cfg.quantization is Quantization.INT8:
        built.warnings.append(
            "ops left in float in the int8 artifact: " + ", ".join(built.stats.float_ops)
        )
    return built


def _fallback_applies(request: BuildRequest, built: _Built) -> bool:
    profile = request.profile
    enabled = profile.build.accuracy_fallback if request.accuracy_fallback is None else (
        request.accuracy_fallback
    )  # fmt: skip
    if not enabled or _within_accuracy_budget(built, profile):
        return False
    if built.quantized.scheme is not Quantization.INT8 or not profile.build.allow_float_fallback:
        return False
    acc = built.accuracy
    pruning_lost = (
        acc is not None
        and acc.pruned_fp32 is not None
        and acc.fp32 is not None
        and acc.fp32 - acc.pruned_fp32 > profile.budgets.max_accuracy_drop_pt
    )
    if pruning_lost:  # float layers cannot win back what pruning took
        built.warnings.append(
            "accuracy fallback skipped: the pruned model misses the budget before quantization"
        )
        return False
    floats = (profile.build.input_dtype, profile.build.output_dtype) == (IODtype.FLOAT32,) * 2
    if built.exporter.format is ModelFormat.TFLITE and not floats:
        built.warnings.append("accuracy fallback skipped: keeping layers float needs float I/O")
        return False
    return True


def _drop(built: _Built) -> float:
    acc = built.accuracy
    return float("inf") if acc is None or acc.drop_pt is None else acc.drop_pt


def _within_accuracy_budget(built: _Built, profile: DeviceProfile) -> bool:
    acc = built.accuracy
    return acc is None or acc.drop_pt is None or acc.drop_pt <= profile.budgets.max_accuracy_drop_pt


def _host_threads(profile: DeviceProfile) -> int:
    return max(1, min(profile.runtime.threads, os.cpu_count() or 1))


def _host_latencies(
    request: BuildRequest, built: _Built, data: LabelledData | None, progress: Progress
) -> tuple[LatencyStats | None, LatencyStats | None]:
    """(fp32, artifact) one-sample latency on this machine."""
    if data is None or request.latency_runs <= 0:
        return None, None
    threads, runs = _host_threads(request.profile), request.latency_runs
    sample = [x[0] for x in data.xs]
    backend = built.exporter.backend
    with progress.task(f"Measuring host latency ({built.exporter.format.value})", total=2) as task:
        base = host_latency(built.baseline.float_model(), sample, backend=backend,
                            threads=threads, runs=runs)  # fmt: skip
        task.advance()
        final = host_latency(built.quantized.content, sample, backend=backend, threads=threads,
                             runs=runs)  # fmt: skip
        task.advance()
    return base, final


def _notes(baselines: dict[ModelFormat, Exporter]) -> tuple[str, ...]:
    notes: list[str] = []
    for exporter in baselines.values():
        if isinstance(exporter, OnnxExporter):
            notes.extend(exporter.notes)
    return tuple(dict.fromkeys(notes))


def _report(
    request: BuildRequest,
    source: SourceModel,
    chosen: list[_Built],
    attempts: list[list[_Built]],
    notes: tuple[str, ...],
    started: float,
) -> rpt.BuildReport:
    profile = request.profile
    artifacts = tuple(
        _artifact_report(request, b, [group[i] for group in attempts]) for i, b in enumerate(chosen)
    )
    failed = any(a.failed for a in artifacts)
    if not failed:
        status = BuildStatus.OK
    else:
        status = (
            BuildStatus.OVER_BUDGET_OVERRIDDEN
            if request.allow_over_budget
            else BuildStatus.OVER_BUDGET
        )
    digest = hashlib.sha256(b"".join(b.quantized.content for b in chosen)).hexdigest()[:12]
    return rpt.BuildReport(
        status=status,
        bundle_id=f"{source.name}-{profile.name}-{digest}",
        bundle_dir=None if status is BuildStatus.OVER_BUDGET else str(request.out_dir.resolve()),
        model=rpt.ModelRef(path=str(request.model), kind=source.kind, sha256=source.sha256),
        profile=ProfileRef(name=profile.name, source=profile.source, digest=profile.digest),
        preferred=chosen[0].exporter.file_name,
        artifacts=artifacts,
        notes=notes,
        duration_s=time.perf_counter() - started,
    )


def _artifact_report(
    request: BuildRequest, built: _Built, attempts: list[_Built]
) -> rpt.ArtifactReport:
    profile, content, stats = request.profile, built.quantized.content, built.stats
    fp32 = built.baseline.float_model()
    fp32_stats = built.baseline.inspect(fp32)
    hw = profile.hardware
    # Estimates: MACs over the board's sustained throughput, int8 and float ops separately.
    est_ms = (stats.int_macs / hw.int8_gmacs + stats.float_macs / hw.fp32_gmacs) / 1e6
    est_ram_mb = (len(content) + stats.arena_bytes) / 2**20
    acc = built.accuracy
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
    io_specs = open_backend(built.exporter.backend, content)
    host_fp32, host_final = built.host
    fp32_gz, final_gz = _gzip_size(fp32), _gzip_size(content)
    fmt = built.exporter.format
    return rpt.ArtifactReport(
        artifact=rpt.ArtifactInfo(
            file=built.exporter.file_name,
            format=fmt.value,
            quantization=built.quantized.scheme.value,
            per_channel=profile.build.per_channel,
            input_dtype=io_specs.inputs[0].dtype,
            output_dtype=io_specs.outputs[0].dtype,
            calibration_method=(
                profile.build.calibration_method.value
                if fmt is ModelFormat.ONNX and built.quantized.scheme is Quantization.INT8
                else None
            ),
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
        pruning=_pruning_figures(built, attempts, fp32_stats, profile),
        fallback=_fallback_figures(built),
        ops=tuple(
            rpt.OpTableRow(op=r.op, precision=r.precision, count=r.count, macs=r.macs)
            for r in stats.table()
        ),
        float_ops=stats.float_ops,
        refused_ops=built.quantized.refused_ops,
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
        warnings=tuple(built.warnings),
    )


def _fallback_figures(built: _Built) -> rpt.FallbackFigures | None:
    outcome = built.fallback
    if outcome is None:
        return None
    return rpt.FallbackFigures(
        plain_int8_drop_pt=built.plain_drop_pt,
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
    built: _Built, attempts: list[_Built], before: ModelStats, profile: DeviceProfile
) -> rpt.PruningFigures | None:
    pruning = built.pruning
    if pruning is None:
        return None
    after = built.stats
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
    request: BuildRequest,
    source: SourceModel,
    chosen: list[_Built],
    report: rpt.BuildReport,
    reference: _Reference,
    signer: Any | None,
) -> None:
    files: dict[str, bytes] = {b.exporter.file_name: b.quantized.content for b in chosen}
    files[REPORT_FILE] = report.to_json().encode()
    sample_values: list[float | None] = [None] * len(chosen)
    if reference.data is not None:
        keep = reference.data.sample_indices(request.eval_sample_size)
        sample = reference.data.subset(keep)
        fp32_outputs = reference.outputs(chosen[0].baseline)[keep]
        files[EVAL_SAMPLE_FILE] = _eval_sample(sample, fp32_outputs)
        for i, built in enumerate(chosen):  # what the board must reproduce on the same sample
            # One sample at a time, exactly as DeviceSession runs it on the board.
            outputs = outputs_of(
                built.quantized.content, sample, backend=built.exporter.backend, batch_size=1
            )
            scored = metrics.score(outputs, labels=sample.y, reference=fp32_outputs)
            sample_values[i] = None if scored is None else scored[1]
    artifacts = []
    for built, figures, value in zip(chosen, report.artifacts, sample_values, strict=True):
        backend = open_backend(built.exporter.backend, built.quantized.content)
        artifacts.append(
            Artifact(
                file=figures.artifact.file,
                format=figures.artifact.format,
                quantization=figures.artifact.quantization,
                per_channel=figures.artifact.per_channel,
                inputs=backend.inputs,
                outputs=backend.outputs,
                metrics=_metrics(figures, value),
                pruning=_pruning_info(figures.pruning),
                kept_float=built.quantized.kept_float,
            )
        )
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
        artifacts=tuple(artifacts),
        preferred=report.preferred,
        files={name: FileEntry.of_bytes(data) for name, data in files.items()},
        budget_override=report.status is BuildStatus.OVER_BUDGET_OVERRIDDEN,
        runtime=RuntimeHints(
            backend=request.profile.runtime.backend.value,
            threads=request.profile.runtime.threads,
            delegate=request.profile.runtime.delegate,
        ),
        eval_sample=EVAL_SAMPLE_FILE if EVAL_SAMPLE_FILE in files else None,
        build_report=REPORT_FILE,
        signing_key_id=None if signer is None else key_id(signer.public_key()),
    )
    write_bundle(
        request.out_dir,
        files,
        manifest,
        signer=None if signer is None else (lambda raw: signature_file(raw, signer)),
    )


def _metrics(figures: rpt.ArtifactReport, eval_sample_value: float | None) -> BuildMetrics:
    acc = figures.accuracy
    return BuildMetrics(
        metric=acc.metric,
        fp32=acc.fp32,
        quantized=acc.quantized,
        drop_pt=acc.drop_pt,
        eval_samples=acc.samples,
        fp32_bytes=figures.sizes.fp32_bytes,
        model_bytes=figures.sizes.model_bytes,
        macs=figures.macs,
        params=figures.params,
        est_latency_ms=figures.latency.est_target_ms,
        est_ram_mb=figures.est_ram_mb,
        host_p50_ms_fp32=figures.latency.host_p50_fp32_ms,
        host_p50_ms=figures.latency.host_p50_ms,
        gzip_bytes=figures.sizes.gzip_bytes,
        eval_sample_value=eval_sample_value,
    )


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


def _eval_sample(sample: LabelledData, fp32_outputs: np.ndarray) -> bytes:
    """A small labelled sample for on-device accuracy, with the fp32 outputs as reference.

    Inputs are stored as ``x`` (one input) or ``x0``, ``x1``, ... in model input order.
    """
    arrays: dict[str, Any] = {"reference": fp32_outputs}
    if len(sample.xs) == 1:
        arrays["x"] = _stored(sample.x)
    else:
        arrays.update({f"x{i}": _stored(x) for i, x in enumerate(sample.xs)})
    if sample.y is not None:
        arrays["y"] = sample.y
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _stored(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) if np.issubdtype(x.dtype, np.floating) else x


def _gzip_size(content: bytes) -> int:
    return len(gzip.compress(content, compresslevel=9, mtime=0))
