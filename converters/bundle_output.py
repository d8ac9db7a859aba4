"""Writing the bundle: the chosen artifacts, the eval sample with the fp32 outputs the board must
reproduce, the build report, and the manifest (signed when a key is given)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import metrics
from edgekit._version import __version__
from edgekit.bundle import write_bundle
from edgekit.converters import report as rpt
from edgekit.converters.candidates import Candidate
from edgekit.converters.plan import Plan
from edgekit.converters.source import Source
from edgekit.converters.validate import Reference, outputs_of
from edgekit.datasets import LabelledData
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
    chosen: tuple[Candidate, ...],
    report: rpt.BuildReport,
    reference: Reference,
    *,
    signer: Any | None,
) -> Path:
    """Write the bundle to the request's ``out_dir`` (atomically, verified) and return it."""
    request, profile = plan.request, plan.profile
    files: dict[str, bytes] = {c.file_name: c.content for c in chosen}
    files[REPORT_FILE] = report.to_json().encode()
    sample_values: tuple[float | None, ...] = (None,) * len(chosen)
    if reference.data is not None:
        files[EVAL_SAMPLE_FILE], sample_values = _eval_sample(
            chosen, reference, request.eval_sample_size
        )
    artifacts = tuple(
        Artifact(
            file=figures.artifact.file,
            format=figures.artifact.format,
            quantization=figures.artifact.quantization,
            per_channel=figures.artifact.per_channel,
            inputs=candidate.io.inputs,
            outputs=candidate.io.outputs,
            metrics=_metrics(figures, value),
            pruning=_pruning_info(figures.pruning),
            kept_float=candidate.artifact.kept_float,
        )
        for candidate, figures, value in zip(chosen, report.artifacts, sample_values, strict=True)
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
        ),
        eval_sample=EVAL_SAMPLE_FILE if EVAL_SAMPLE_FILE in files else None,
        build_report=REPORT_FILE,
        signing_key_id=None if signer is None else key_id(signer.public_key()),
    )
    return write_bundle(
        request.out_dir,
        files,
        manifest,
        signer=None if signer is None else (lambda raw: signature_file(raw, signer)),
    )


def _eval_sample(
    chosen: tuple[Candidate, ...], reference: Reference, size: int
) -> tuple[bytes, tuple[float | None, ...]]:
    """The eval sample file, and each artifact's metric on it: what the board must reproduce."""
    assert reference.data is not None  # the caller checked
    keep = reference.data.sample_indices(size)
    sample = reference.data.subset(keep)
    preferred = chosen[0].baseline
    fp32_outputs = reference.outputs(preferred.format, preferred.content,
                                     backend=preferred.backend)[keep]  # fmt: skip
    values: list[float | None] = []
    for candidate in chosen:
        # One sample at a time, exactly as DeviceSession runs it on the board.
        outputs = outputs_of(candidate.content, sample, backend=candidate.backend, batch_size=1)
        scored = metrics.score(outputs, labels=sample.y, reference=fp32_outputs)
        values.append(None if scored is None else scored[1])
    return _sample_file(sample, fp32_outputs), tuple(values)


def _metrics(figures: rpt.ArtifactReport, eval_sample_value: float | None) -> BuildMetrics:
    """The manifest's figures: the build report's own sections."""
    return BuildMetrics(
        accuracy=figures.accuracy,
        sizes=figures.sizes,
        latency=figures.latency,
        macs=figures.macs,
        params=figures.params,
        est_ram_mb=figures.est_ram_mb,
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


def _sample_file(sample: LabelledData, fp32_outputs: np.ndarray) -> bytes:
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
