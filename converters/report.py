"""The build report: every figure of a build, as JSON (``--json``, ``build_report.json``).

Accuracy, size and latency sections are the shared core's (:mod:`edgekit.figures`): the bundle
manifest holds the same values.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from edgekit.converters.target_report import TargetReport
from edgekit.figures import AccuracyFigures, EstimateInputs, LatencyFigures, SizeFigures
from edgekit.manifest import ProfileRef, SourceKindName
from edgekit.values import Frozen
from edgekit.vocab import (
    BuildStatus,
    CalibrationMethod,
    CheckStatus,
    ModelFormat,
    OpPrecision,
    PruneKind,
    Quantization,
    SelectionSite,
)


class ModelRef(Frozen):
    path: str
    kind: SourceKindName
    sha256: str


class ArtifactInfo(Frozen):
    file: str
    format: ModelFormat
    quantization: Quantization
    per_channel: bool
    input_dtype: str
    output_dtype: str
    calibration_method: CalibrationMethod | None = None  # ONNX: ONNX Runtime's calibrator
    variant: str | None = None  # how it was quantized, as the candidates table names it


class PrunedKernel(Frozen):
    """A kernel in the Keras model after pruning."""

    layer: str
    weight: str
    size: int
    target: float
    achieved: float


class PrunedChannels(Frozen):
    """A layer's output channels before and after structured pruning."""

    layer: str
    before: int
    after: int
    skipped: str


class ArtifactWeight(Frozen):
    """Sparsity of a weight tensor as stored in the artifact."""

    op: str
    tensor: str
    size: int
    sparsity: float


class PruneAttempt(Frozen):
    """One sparsity tried by --auto-sparsity."""

    sparsity: float
    drop_pt: float | None
    within_budget: bool


class PruningFigures(Frozen):
    kind: PruneKind
    target: float
    schedule: str
    artifact_sparsity: float  # zeros over all kernels of the artifact's weighted ops
    params_before: int
    params_after: int
    nonzero_params_after: int
    macs_before: int
    macs_after: int
    kernels: tuple[PrunedKernel, ...]
    channels: tuple[PrunedChannels, ...]
    artifact_weights: tuple[ArtifactWeight, ...]
    attempts: tuple[PruneAttempt, ...]


class LayerCostRow(Frozen):
    """A layer and the SQNR (dB) it loses when quantized, against fp32."""

    name: str
    op: str
    loss_db: float


class FallbackTry(Frozen):
    kept_float: int
    drop_pt: float | None
    within_budget: bool


class FallbackFigures(Frozen):
    """What the accuracy-aware fallback did when plain int8 missed the budget."""

    plain_int8_drop_pt: float | None
    kept_float: tuple[str, ...]
    met_budget: bool
    tries: tuple[FallbackTry, ...]
    worst_layers: tuple[LayerCostRow, ...]  # the ranking's head, worst first


class OpCostRow(Frozen):
    """One op's per-inference cost in each precision, from the runtime's per-op profiler."""

    node: str
    op: str
    float_us: float
    int8_us: float  # its kernel plus the conversions around it
    int8_kernel: str
    slower_in_int8: bool
    keep_float: bool  # slower in int8 and in a region where leaving it float drops conversions


class LatencyFallbackFigures(Frozen):
    """What the latency-aware fallback kept float, and the per-op profile that named it."""

    kept_float: tuple[str, ...]
    ops: tuple[OpCostRow, ...]


class CandidateRow(Frozen):
    """One candidate the build made and measured, and what the choice made of it."""

    file: str
    format: ModelFormat
    variant: str
    quantization: Quantization
    kept_float: int
    accuracy: AccuracyFigures
    model_bytes: int
    # Layers left float (accuracy fallback, latency-aware fallback) and, for a latency-aware
    # candidate, the per-op profile that named them.
    kept_float_names: tuple[str, ...] = ()
    latency_profile: tuple[OpCostRow, ...] = ()
    host_p50_ms: float | None
    host_p50_ci_ms: float | None  # half-width of the 95 % interval of the median
    host_p90_ms: float | None
    host_runs: int | None
    est_target_ms: float | None  # None: unknown
    shipped: bool
    verdict: str


class OpTableRow(Frozen):
    op: str
    precision: OpPrecision
    count: int
    macs: int


class CheckRow(Frozen):
    name: str
    value: float | None
    limit: float | None
    unit: str
    status: CheckStatus
    detail: str


class EvalSampleInfo(Frozen):
    """The bundle's eval sample: how many samples, how stored, how large."""

    samples: int
    requested: int
    coding: str  # "uint8" (8-bit values with their scale), "float16", or an integer dtype
    bytes: int
    note: str | None


class ArtifactReport(Frozen):
    """Everything measured and decided for one shipped artifact."""

    artifact: ArtifactInfo
    accuracy: AccuracyFigures
    # fp32 and this artifact on the bundle's eval sample: what boards are compared with.
    sample_accuracy: AccuracyFigures | None
    sizes: SizeFigures
    latency: LatencyFigures
    estimate_inputs: EstimateInputs
    macs: int
    params: int
    est_ram_mb: float
    pruning: PruningFigures | None
    fallback: FallbackFigures | None
    latency_fallback: LatencyFallbackFigures | None
    ops: tuple[OpTableRow, ...]
    float_ops: tuple[str, ...]
    qdq_float_ops: tuple[str, ...]  # quantized, yet run as float kernels between Q/DQ pairs
    refused_ops: tuple[str, ...]
    checks: tuple[CheckRow, ...]
    warnings: tuple[str, ...]
    # TensorFlow Lite Micro, Vela or the Edge TPU compiler on it, where the profile's target has
    # them.
    target: TargetReport | None = None

    @property
    def failed(self) -> list[str]:
        """Names of the checks that failed."""
        return [c.name for c in self.checks if c.status is CheckStatus.FAIL]


class BuildReport(Frozen):
    """Everything a build measured and decided, per artifact."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_id: Literal["edgekit.build-report/2"] = Field(
        default="edgekit.build-report/2", alias="schema"
    )
    status: BuildStatus
    bundle_id: str
    bundle_dir: str | None
    model: ModelRef
    profile: ProfileRef
    preferred: str  # the artifact file the runtime should load when it can run several
    artifacts: tuple[ArtifactReport, ...]  # the shipped ones, preferred first
    candidates: tuple[CandidateRow, ...]  # every candidate made, shipped or not, and why
    eval_sample: EvalSampleInfo | None
    choice: str  # the choice in one line
    selection: SelectionSite  # board: the bundle's artifacts are candidates the board measures
    notes: tuple[str, ...]  # what loading changed: opset upgrades, fixed axes, pre-processing
    duration_s: float

    @property
    def primary(self) -> ArtifactReport:
        """The preferred artifact's report."""
        return next(a for a in self.artifacts if a.artifact.file == self.preferred)

    def artifact(self, fmt: str) -> ArtifactReport:
        """The report of the first shipped artifact in format ``fmt``."""
        return next(a for a in self.artifacts if a.artifact.format == fmt)

    def candidate(self, file: str) -> CandidateRow:
        """The candidate that is (or would have been) the file ``file``."""
        return next(c for c in self.candidates if c.file == file)

    def to_json(self) -> str:
        """The report as written to ``build_report.json`` and printed by ``--json``."""
        return self.model_dump_json(by_alias=True, indent=2) + "\n"
