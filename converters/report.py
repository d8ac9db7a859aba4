"""The build report: every figure of a build, as JSON (``--json``, ``build_report.json``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelRef(_Frozen):
    path: str
    kind: str
    sha256: str


class ProfileRef(_Frozen):
    name: str
    source: str
    digest: str


class ArtifactInfo(_Frozen):
    file: str
    format: Literal["tflite", "onnx"]
    quantization: str
    per_channel: bool
    input_dtype: str
    output_dtype: str


class AccuracyFigures(_Frozen):
    metric: Literal["top1", "agreement", "sqnr_db"] | None
    fp32: float | None
    quantized: float | None
    drop_pt: float | None
    samples: int
    data: str | None


class SizeFigures(_Frozen):
    fp32_bytes: int
    model_bytes: int
    ratio: float


class LatencyFigures(_Frozen):
    """Estimates on the target from the profile, and p50 measured on the build host."""

    est_target_ms: float
    est_target_fp32_ms: float
    host_p50_ms: float | None
    host_p50_fp32_ms: float | None
    host_ratio: float | None
    host_threads: int


class OpTableRow(_Frozen):
    op: str
    precision: str
    count: int
    macs: int


class CheckRow(_Frozen):
    name: str
    value: float | None
    limit: float | None
    unit: str
    status: Literal["pass", "fail", "not measured"]
    detail: str


class BuildReport(_Frozen):
    """Everything a build measured and decided."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_id: Literal["edgekit.build-report/1"] = Field(
        default="edgekit.build-report/1", alias="schema"
    )
    status: Literal["ok", "over_budget", "over_budget_overridden"]
    bundle_id: str
    bundle_dir: str | None
    model: ModelRef
    profile: ProfileRef
    artifact: ArtifactInfo
    accuracy: AccuracyFigures
    sizes: SizeFigures
    latency: LatencyFigures
    macs: int
    params: int
    est_ram_mb: float
    ops: tuple[OpTableRow, ...]
    float_ops: tuple[str, ...]
    refused_ops: tuple[str, ...]
    checks: tuple[CheckRow, ...]
    warnings: tuple[str, ...]
    duration_s: float

    def to_json(self) -> str:
        """The report as written to ``build_report.json`` and printed by ``--json``."""
        return self.model_dump_json(by_alias=True, indent=2) + "\n"
