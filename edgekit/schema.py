"""Wire schema shared by the runtime (which reports) and the collector (which stores).

Topics, under a configurable prefix (default ``edgekit/v1``):

    <prefix>/<device_id>/status   retained, b"online" on connect, b"offline" as Last Will
    <prefix>/<device_id>/report   QoS 1, one JSON :class:`Report` per measurement window

Kept free of heavy imports: the board imports it on every report.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, ConfigDict, Field, StringConstraints, ValidationError

from edgekit.drift import WindowDrift
from edgekit.errors import PayloadError
from edgekit.figures import EstimateInputs
from edgekit.values import FiniteInJson, Frozen, Sha256
from edgekit.vocab import BackendName, MetricName, ModelFormat

DEFAULT_PREFIX = "edgekit/v1"
# Far above a real report (~2 KB); anything larger is refused before it is parsed.
MAX_REPORT_BYTES = 64 * 1024
STATUS_ONLINE = b"online"
STATUS_OFFLINE = b"offline"

# Topic-safe: no '/', '+', '#', no spaces; what a hostname or a serial number looks like.
DeviceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
MessageId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
# Timings, memory and figures copied from the manifest (whose floats are finite): never NaN or
# infinite, so refused however they come (pydantic checks it at no cost). The board's own
# accuracy may be an infinite SQNR, so only one read from a payload must be finite.
Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class LatencyStats(Frozen):
    """Latency of timed runs in milliseconds, measured the way benchmark_model does."""

    count: Annotated[int, Field(ge=1)]
    mean_ms: NonNegative
    std_ms: NonNegative
    min_ms: NonNegative
    p50_ms: NonNegative
    p90_ms: NonNegative
    p99_ms: NonNegative
    max_ms: NonNegative
    # Load (interpreter creation + tensor allocation) and the first, cold inference.
    init_ms: NonNegative | None = None
    first_ms: NonNegative | None = None


class AccuracyResult(Frozen):
    """Accuracy measured on the board on the bundle's eval sample."""

    metric: MetricName
    value: FiniteInJson
    samples: Annotated[int, Field(ge=1)]


class BuildFigures(Frozen):
    """Build-time figures from the manifest, so reports compare estimate and measurement.

    ``fp32`` and ``quantized`` were measured at build time on the bundle's eval sample, the
    samples the board scores too (``samples`` of them; absent in reports from edgekit 0.1, whose
    figures came from all the build's eval data). ``est_latency_ms`` is None when the estimate is
    unknown.
    """

    est_latency_ms: NonNegative | None
    metric: MetricName | None = None
    fp32: Finite | None = None
    quantized: Finite | None = None
    model_bytes: Annotated[int, Field(ge=0)]
    samples: Annotated[int, Field(ge=1)] | None = None
    variant: Annotated[str, StringConstraints(max_length=64)] | None = None
    estimate_inputs: EstimateInputs | None = None
    # One-sample p50 of this artifact and of its fp32 model on the build host, side by side:
    # the fleet report says when what ships was slower there than fp32.
    host_p50_ms: NonNegative | None = None
    host_p50_fp32_ms: NonNegative | None = None


class CandidateResult(Frozen):
    """One candidate of a bundle as the board measured it when choosing what to run."""

    artifact: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    variant: Annotated[str, StringConstraints(max_length=64)] | None = None
    p50_ms: NonNegative | None  # None: it could not run here
    accuracy: FiniteInJson | None = None
    within_budget: bool
    reason: Annotated[str, StringConstraints(max_length=200)] = ""


class Selection(Frozen):
    """How the board chose among the bundle's candidates (reports after that choice)."""

    chosen: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    measured_at: AwareDatetime
    candidates: Annotated[tuple[CandidateResult, ...], Field(min_length=1, max_length=16)]


class HostFacts(Frozen):
    """What the board is."""

    hostname: Annotated[str, StringConstraints(max_length=255)]
    machine: Annotated[str, StringConstraints(max_length=64)]
    system: Annotated[str, StringConstraints(max_length=64)]
    python: Annotated[str, StringConstraints(max_length=32)]
    cpu_count: Annotated[int, Field(ge=1)]


class Report(Frozen):
    """One measurement window of one device running one bundle."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_id: Literal["edgekit.report/1"] = Field(default="edgekit.report/1", alias="schema")
    message_id: MessageId  # unique per report; the collector drops repeats
    device_id: DeviceId
    sequence: Annotated[int, Field(ge=0)]  # per-device window counter
    bundle_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    bundle_digest: Sha256  # SHA-256 of the bundle's manifest.json
    profile: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    artifact: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    format: ModelFormat
    backend: BackendName
    backend_version: Annotated[str, StringConstraints(max_length=64)]
    threads: Annotated[int, Field(ge=1)]
    started_at: AwareDatetime
    finished_at: AwareDatetime
    latency: LatencyStats
    accuracy: AccuracyResult | None = None
    peak_rss_mb: NonNegative
    build: BuildFigures
    host: HostFacts
    # Reports the daemon's outbox had to drop (full) since it started.
    dropped_reports: Annotated[int, Field(ge=0)] = 0
    # Inputs from a watched folder run in this window, beside the eval sample.
    workload_inputs: Annotated[int, Field(ge=0)] = 0
    # Set when the bundle held several candidates and the board chose among them.
    selection: Selection | None = None
    # What the model saw and said this window, beside the bundle's reference (edgekit.drift).
    drift: WindowDrift | None = None

    def to_json(self) -> bytes:
        """The payload as published."""
        return self.model_dump_json(by_alias=True).encode()


def parse_report(payload: bytes) -> Report:
    """Validate a report payload; raise PayloadError saying why it is not one."""
    if len(payload) > MAX_REPORT_BYTES:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {MAX_REPORT_BYTES}")
    try:
        return Report.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PayloadError(f"{where}: {first['msg']}{more}") from exc


def report_topic(device_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Topic a device publishes its reports on."""
    return f"{prefix}/{device_id}/report"


def status_topic(device_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Retained topic holding a device's online/offline state."""
    return f"{prefix}/{device_id}/status"


def parse_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> tuple[str, str]:
    """Split ``<prefix>/<device_id>/<kind>`` into (device_id, kind); PayloadError otherwise."""
    head = prefix.rstrip("/") + "/"
    rest = topic[len(head) :] if topic.startswith(head) else None
    parts = rest.split("/") if rest is not None else []
    if len(parts) != 2 or parts[1] not in ("report", "status") or not parts[0]:
        raise PayloadError(f"topic {topic!r} is not {head}<device_id>/(report|status)")
    return parts[0], parts[1]


def utc_now() -> datetime:
    """Timezone-aware now, as reports carry it."""
    return datetime.now(UTC)
