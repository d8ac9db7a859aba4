"""The bundle manifest: a versioned, validated description of everything in a bundle.

The manifest lists every file with its SHA-256, so checking the manifest (and, later, its signature)
is enough to trust the bundle. It is written by the converters and read by the runtime, which is why
it lives in the shared core and imports nothing heavy.

Schema 2 holds each artifact's build-time figures in the build report's own sections
(:mod:`edgekit.figures`); manifests of schema 1 (one flat ``metrics`` object) are read as schema 2.
"""

from __future__ import annotations

import hashlib
import math
from typing import Annotated, Any, Final, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from edgekit.drift import DriftSummary
from edgekit.figures import AccuracyFigures, EstimateInputs, LatencyFigures, SizeFigures
from edgekit.values import FiniteInJson, Frozen, Sha256
from edgekit.vocab import Layout, ModelFormat, PruneKind, Quantization, SelectionSite

MANIFEST_SCHEMA: Final = "edgekit.manifest/2"

# Bundle files are plain names: no directories, no "..", nothing that escapes the bundle.
FileName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
# What the user's model was: one of SourceKind's values for the shipped sources; a source
# plug-in names its own kind (one new module and one registry line, no edit here).
SourceKindName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Dtype = Literal["float32", "float16", "int8", "uint8", "int16", "int32", "int64", "bool"]


class QuantParams(Frozen):
    """Affine quantization of a tensor: real = scale * (q - zero_point)."""

    scale: Annotated[FiniteInJson, Field(gt=0)]
    zero_point: int


class TensorSpec(Frozen):
    """Name, shape (None for a dynamic axis), dtype and quantization of a model input or output."""

    name: str
    shape: tuple[int | None, ...]
    dtype: Dtype
    quantization: QuantParams | None = None
    # Axis order of a 4-D input when the source states it (PyTorch: NCHW); None when not stated.
    # Nothing transposes silently: the board feeds this order.
    layout: Layout | None = None

    def fits(self, sample_shape: tuple[int, ...]) -> bool:
        """True when one sample of ``sample_shape`` (no batch axis) fits this tensor."""
        expected = self.shape[1:]
        return len(expected) == len(sample_shape) and all(
            e is None or e == s for e, s in zip(expected, sample_shape, strict=True)
        )


class FileEntry(Frozen):
    """A file of the bundle and its digest."""

    sha256: Sha256
    size: Annotated[int, Field(ge=0)]

    @classmethod
    def of_bytes(cls, data: bytes) -> FileEntry:
        """The entry for a file holding ``data``."""
        return cls(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


class ProfileRef(Frozen):
    """The profile a bundle was built for."""

    name: str
    digest: Sha256
    source: str


class SourceModel(Frozen):
    """The model the bundle was built from."""

    name: str
    kind: SourceKindName
    sha256: Sha256


class BuildMetrics(Frozen):
    """Build-time figures, kept so the fleet report can compare them with what boards measure:
    the build report's sections for this artifact."""

    accuracy: AccuracyFigures
    sizes: SizeFigures
    latency: LatencyFigures
    macs: int
    params: int
    est_ram_mb: FiniteInJson
    # The metric on the bundle's own eval sample at build time: the board must reproduce it.
    eval_sample_value: FiniteInJson | None = None
    # fp32 and this artifact on the bundle's eval sample: the pair shown beside what boards
    # measure on the same samples (None before edgekit 0.2).
    sample_accuracy: AccuracyFigures | None = None
    # What the latency estimate was computed from (None before edgekit 0.2).
    estimate_inputs: EstimateInputs | None = None


class PruningInfo(Frozen):
    """How the model was pruned, with the sparsity read back from the artifact."""

    kind: PruneKind
    target: FiniteInJson
    achieved: FiniteInJson  # zeros over all kernels of weighted ops in the artifact
    schedule: str
    tensors: dict[str, FiniteInJson]  # artifact weight tensor -> its sparsity
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int


class Artifact(Frozen):
    """A model file of the bundle, in one format, with what the runtime needs to feed it."""

    file: FileName
    format: ModelFormat
    quantization: Quantization
    per_channel: bool
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    metrics: BuildMetrics
    pruning: PruningInfo | None = None
    # Layers the accuracy-aware fallback kept in float.
    kept_float: tuple[str, ...] = ()
    # How it was quantized, as the build report names the candidate ("int8 QDQ U8S8 per-channel").
    variant: str | None = None
    # What this artifact saw and said on the eval sample at build time (edgekit.drift): what
    # boards compare their windows with (None in bundles built without eval data).
    drift_reference: DriftSummary | None = None


class RuntimeHints(Frozen):
    """How the profile says the board should run the bundle (flags on the board win)."""

    backend: str
    threads: Annotated[int, Field(ge=1)]
    delegate: str = "none"
    # The accuracy a candidate may lose against fp32 on the eval sample when the board chooses.
    max_accuracy_drop_pt: FiniteInJson | None = None


class Manifest(Frozen):
    """What a bundle holds; every file but the manifest itself is listed with its SHA-256."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_id: Literal["edgekit.manifest/2"] = Field(default=MANIFEST_SCHEMA, alias="schema")
    bundle_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    created_at: str
    edgekit_version: str
    profile: ProfileRef
    source_model: SourceModel
    artifacts: Annotated[tuple[Artifact, ...], Field(min_length=1)]
    # The artifact the runtime should load when it can run several.
    preferred: FileName
    files: dict[FileName, FileEntry]
    runtime: RuntimeHints | None = None
    # Key id of the Ed25519 key that signed this manifest (manifest.sig), if it was signed.
    signing_key_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")] | None = None
    # True when the build missed a budget and the user chose to bundle it anyway.
    budget_override: bool = False
    eval_sample: FileName | None = None
    build_report: FileName | None = None
    # "board": the artifacts are candidates the board measures to pick the fastest; "host": the
    # build chose, run the preferred one.
    selection: SelectionSite = SelectionSite.HOST

    @model_validator(mode="before")
    @classmethod
    def _read_schema_1(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("schema") == "edgekit.manifest/1":
            return upgrade_schema_1(data)
        return data

    def artifact(self, file: str | None = None) -> Artifact:
        """The artifact named ``file``, or the preferred one."""
        wanted = file or self.preferred
        for art in self.artifacts:
            if art.file == wanted:
                return art
        raise KeyError(wanted)

    def to_json(self) -> str:
        """The manifest as it is written to ``manifest.json``."""
        return self.model_dump_json(by_alias=True, indent=2) + "\n"


# manifest/1's flat per-artifact metrics: key -> (section, key) in manifest/2 ("" = top level).
_SCHEMA_1_METRICS = {
    "metric": ("accuracy", "metric"),
    "fp32": ("accuracy", "fp32"),
    "quantized": ("accuracy", "quantized"),
    "drop_pt": ("accuracy", "drop_pt"),
    "eval_samples": ("accuracy", "samples"),
    "fp32_bytes": ("sizes", "fp32_bytes"),
    "model_bytes": ("sizes", "model_bytes"),
    "gzip_bytes": ("sizes", "gzip_bytes"),
    "est_latency_ms": ("latency", "est_target_ms"),
    "host_p50_ms": ("latency", "host_p50_ms"),
    "host_p50_ms_fp32": ("latency", "host_p50_fp32_ms"),
    "macs": ("", "macs"),
    "params": ("", "params"),
    "est_ram_mb": ("", "est_ram_mb"),
    "eval_sample_value": ("", "eval_sample_value"),
}
# Figures manifest/1 did not record, or left out when unmeasured.
_SCHEMA_1_UNKNOWN = {
    "accuracy": {"data": None},
    "sizes": {"fp32_gzip_bytes": None, "gzip_bytes": None, "gzip_ratio": None},
    "latency": {
        "est_target_fp32_ms": None,
        "host_p50_ms": None,
        "host_p50_fp32_ms": None,
        "host_threads": None,
    },
}


def upgrade_schema_1(data: dict[str, Any]) -> dict[str, Any]:
    """A manifest/1 document as manifest/2: each artifact's flat ``metrics`` split into the
    figure sections. Moves keys only; validation then judges the values as usual (metrics with
    an unknown key are left as they are, for validation to refuse)."""
    upgraded = {**data, "schema": MANIFEST_SCHEMA}
    artifacts = data.get("artifacts")
    if isinstance(artifacts, list):
        upgraded["artifacts"] = [
            {**a, "metrics": _metrics_of_schema_1(a["metrics"])}
            if isinstance(a, dict) and isinstance(a.get("metrics"), dict)
            else a
            for a in artifacts
        ]
    return upgraded


def _metrics_of_schema_1(flat: dict[str, Any]) -> dict[str, Any]:
    if not set(flat) <= set(_SCHEMA_1_METRICS):
        return flat  # not schema 1's metrics: left for validation to refuse
    sections: dict[str, dict[str, Any]] = {k: dict(v) for k, v in _SCHEMA_1_UNKNOWN.items()}
    metrics: dict[str, Any] = {}
    for key, value in flat.items():
        section, name = _SCHEMA_1_METRICS[key]
        (sections[section] if section else metrics)[name] = value
    sizes, latency = sections["sizes"], sections["latency"]
    if (ratio := _ratio(sizes.get("model_bytes"), sizes.get("fp32_bytes"))) is not None:
        sizes["ratio"] = ratio
    latency["host_ratio"] = _ratio(latency.get("host_p50_ms"), latency.get("host_p50_fp32_ms"))
    return {**metrics, **sections}


def _ratio(part: Any, whole: Any) -> float | None:
    """part / whole for positive finite numbers, else None (validation reports bad values)."""
    numbers = (int, float)
    if not (isinstance(part, numbers) and isinstance(whole, numbers)):
        return None
    if isinstance(part, bool) or isinstance(whole, bool):
        return None
    try:
        value = part / whole if whole > 0 else math.nan
    except OverflowError:  # huge integers
        return None
    return value if math.isfinite(value) else None
