"""Writing the bundle: the shipped artifacts, the eval sample (:mod:`.sample_output`), the build
report, files the target's tools or ``--emit`` made (:mod:`.c_array`), and the manifest (signed
when a key is given)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgekit._version import __version__
from edgekit.bundle import write_bundle
from edgekit.converters import report as rpt
from edgekit.converters.c_array import emitted_files
from edgekit.converters.choice import Choice
from edgekit.converters.plan import Plan
from edgekit.converters.sample_output import SampleOutput
from edgekit.converters.source import Source
from edgekit.converters.target_checks import target_files
from edgekit.figures import AccuracyFigures
from edgekit.manifest import (
    Artifact,
    BuildMetrics,
    FileEntry,
    Manifest,
    ProfileRef,
    PruningInfo,
    RuntimeHints,
    SourceModel,
)
from edgekit.signing import key_id, load_private_key, signature_file
from edgekit.vocab import BuildStatus

EVAL_SAMPLE_FILE = "eval_sample.npz"
REPORT_FILE = "build_report.json"


def load_signer(path: Path | None) -> Any | None:
    """The Ed25519 private key to sign with, if any."""
    return None if path is None else load_private_key(path)


def write_output(
    plan: Plan,
    source: Source,
    choice: Choice,
    report: rpt.BuildReport,
    sample: SampleOutput | None,
    *,
    signer: Any | None,
) -> Path:
    """Write the bundle to the request's ``out_dir`` (atomically, verified) and return it."""
    request, profile = plan.request, plan.profile
    shipped = choice.shipped
    files: dict[str, bytes] = {c.file_name: c.content for c in shipped}
    files[REPORT_FILE] = report.to_json().encode()
    if sample is not None:
        files[EVAL_SAMPLE_FILE] = sample.content
    for candidate in shipped:
        files.update(target_files(candidate))
    files.update(emitted_files(request.emit, shipped[0], profile=profile.name))
    figures_on_sample = sample.figures if sample is not None else (None,) * len(shipped)
    references = sample.references if sample is not None else (None,) * len(shipped)
    artifacts = tuple(
        Artifact(
            file=figures.artifact.file,
            format=figures.artifact.format,
            quantization=figures.artifact.quantization,
            per_channel=figures.artifact.per_channel,
            inputs=candidate.io.inputs,
            outputs=candidate.io.outputs,
            metrics=_metrics(figures, on_sample),
            pruning=_pruning_info(figures.pruning),
            kept_float=candidate.artifact.kept_float,
            variant=candidate.label[:64],
            drift_reference=reference,
        )
        for candidate, figures, on_sample, reference in zip(
            shipped, report.artifacts, figures_on_sample, references, strict=True
        )
    )
    manifest = Manifest(
        bundle_id=report.bundle_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        edgekit_version=__version__,
        profile=ProfileRef(name=profile.name, digest=profile.digest, source=profile.source),
        source_model=SourceModel(name=request.model.name, kind=source.kind, sha256=source.sha256),
        artifacts=artifacts,
        preferred=report.preferred,
        files={name: FileEntry.of_bytes(data) for name, data in files.items()},
        budget_override=report.status is BuildStatus.OVER_BUDGET_OVERRIDDEN,
        runtime=RuntimeHints(
            backend=profile.runtime.backend.value,
            threads=profile.runtime.threads,
            delegate=profile.runtime.delegate,
            max_accuracy_drop_pt=profile.budgets.max_accuracy_drop_pt,
        ),
        eval_sample=EVAL_SAMPLE_FILE if EVAL_SAMPLE_FILE in files else None,
        build_report=REPORT_FILE,
        signing_key_id=None if signer is None else key_id(signer.public_key()),
        selection=choice.site,
    )
    return write_bundle(
        request.out_dir,
        files,
        manifest,
        signer=None if signer is None else (lambda raw: signature_file(raw, signer)),
    )


def _metrics(figures: rpt.ArtifactReport, on_sample: AccuracyFigures | None) -> BuildMetrics:
    """The manifest's figures: the build report's own sections, and the eval sample's pair."""
    return BuildMetrics(
        accuracy=figures.accuracy,
        sizes=figures.sizes,
        latency=figures.latency,
        macs=figures.macs,
        params=figures.params,
        est_ram_mb=figures.est_ram_mb,
        eval_sample_value=None if on_sample is None else on_sample.quantized,
        sample_accuracy=on_sample,
        estimate_inputs=figures.estimate_inputs,
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
