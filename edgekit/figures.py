"""Build-time figures of one artifact: accuracy, sizes, latency.

The build report (``build_report.json``) and the bundle manifest hold these same sections, so
the two cannot disagree. Part of the shared core: the runtime reads them from the manifest, the
converters write them. Fields marked "None in manifest/1" were not recorded before manifest
schema 2; a build always fills them.
"""

from __future__ import annotations

from edgekit.values import FiniteInJson, Frozen
from edgekit.vocab import BackendName, MetricName


class AccuracyFigures(Frozen):
    """The metric of the fp32 model and of the artifact on the same data."""

    metric: MetricName | None
    fp32: FiniteInJson | None
    quantized: FiniteInJson | None
    drop_pt: FiniteInJson | None  # fp32 of the unpruned model minus the final artifact
    samples: int
    data: str | None  # which data it was measured on (None in manifest/1)
    pruned_fp32: FiniteInJson | None = None  # the pruned model before quantization


class SizeFigures(Frozen):
    """The artifact's size against the fp32 baseline's, plain and gzipped."""

    fp32_bytes: int
    model_bytes: int
    ratio: FiniteInJson
    # What a board downloads when the artifact travels compressed: what pruning buys in transfer.
    fp32_gzip_bytes: int | None  # None in manifest/1
    gzip_bytes: int | None  # None in manifest/1 bundles written before gzip sizes were kept
    gzip_ratio: FiniteInJson | None  # None in manifest/1


class LatencyFigures(Frozen):
    """Estimates on the target from the profile, and p50 measured on the build host.

    An estimate is None when the profile has no figures for the runtime that runs the artifact
    on the board, or when the artifact hides MACs (loops): unknown, never a pass.
    """

    est_target_ms: FiniteInJson | None
    est_target_fp32_ms: FiniteInJson | None  # None in manifest/1
    host_p50_ms: FiniteInJson | None
    host_p50_fp32_ms: FiniteInJson | None
    host_ratio: FiniteInJson | None
    host_threads: int | None  # None in manifest/1
    # The runtime whose figures made the estimate, or why there is none.
    est_runtime: BackendName | None = None
    est_unknown: str | None = None
    # Half-width of the 95 % interval of the host p50, and the host p90 (the spread).
    host_p50_ci_ms: FiniteInJson | None = None
    host_p90_ms: FiniteInJson | None = None


class EstimateInputs(Frozen):
    """What a latency estimate was computed from: the fleet's measurements refit the profile's
    figures against these (``edgekit profiles calibrate``)."""

    int8_macs: int
    int8_depthwise_macs: int
    float_macs: int
    ops: int
