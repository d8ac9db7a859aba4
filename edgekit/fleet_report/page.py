"""The data the HTML page draws from: one compact JSON document, rounded for display.

The page's plots are drawn by its own script from this document, so each number is written once
(not once per Plotly figure), and a fleet of a thousand boards with a trend per board stays a few
megabytes: bundles are referred to by their position in ``bundles``, times by bucket index,
drift references are listed once, and a series leaves out a figure no window measured. The JSON
export (``--out x.json``) carries the unrounded figures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from edgekit.fleet_report.figures import FleetFigures
from edgekit.fleet_report.series import Series

_SERIES_FIELDS = ("p50_ms", "p90_ms", "p99_ms", "max_p99_ms", "accuracy", "rss_mb", "init_ms",
                  "first_ms")  # fmt: skip
_SHORT = ("p50", "p90", "p99", "max99", "acc", "rss", "init", "first")


def page_data(f: FleetFigures) -> str:
    """The page's JSON, safe to place inside a ``<script>`` element."""
    axis = f.axis
    index = {b.bundle_digest: i for i, b in enumerate(f.bundles)}
    references: dict[tuple[str, tuple[int, ...], tuple[int, ...]], int] = {}
    data = {
        "device": f.filters.device,
        "axis": None
        if axis is None
        else {
            "start": round(axis.start.timestamp() * 1e3),
            "width": axis.width_s * 1e3,
            "count": axis.count,
        },
        "bundles": [_bundle(b) for b in f.bundles],
        "devices": [_device(d, index) for d in f.devices],
        "series": {
            "bundles": [_series(s, index) for s in f.bundle_series],
            "devices": {d: [_series(s, index) for s in ss] for d, ss in f.device_series.items()},
        },
        "ab": [_comparison(c) for c in f.comparisons],
        "drift": [_drift(d, index, references) for d in f.drift],
        "refs": [{"conf": list(c), "cls": list(k)} for _, c, k in references],
    }
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    # Inside <script>, "</" could end the element and "<!--" start a comment.
    return text.replace("<", "\\u003c")


def r4(value: float | None) -> float | None:
    """``value`` to 4 significant digits (None and non-finite values as None)."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.4g}")


def _bundle(b: Any) -> dict[str, Any]:
    return {
        "d": b.bundle_digest, "id": b.bundle_id, "label": b.label, "profile": b.profile,
        "artifact": b.artifact, "format": b.format, "kib": r4(b.model_bytes / 1024),
        "est": r4(b.est_latency_ms), "metric": b.metric, "fp32": r4(b.fp32),
        "quantized": r4(b.quantized), "on": b.build_accuracy_on, "variant": b.variant,
        "host": r4(b.host_p50_ms), "host_fp32": r4(b.host_p50_fp32_ms),
        "boards": b.devices, "reports": b.reports,
        "p50": r4(b.p50_ms), "p90": r4(b.p90_ms), "p99": r4(b.p99_ms),
        "max99": r4(b.max_p99_ms), "acc": r4(b.accuracy), "rss": r4(b.peak_rss_mb),
        "init": r4(b.init_ms), "first": r4(b.first_ms), "board_p50": r4(b.board_p50_ms),
        "board_reports": b.board_reports,
        "dev": [[d, r4(v)] for d, v in b.device_p50],
    }  # fmt: skip


def _device(d: Any, index: dict[str, int]) -> dict[str, Any]:
    return {
        "id": d.device_id, "hostname": d.hostname, "machine": d.machine, "system": d.system,
        "health": d.health.value, "host": d.host.value, "status": d.last_status,
        "status_at": _iso(d.status_at), "profiles": list(d.profiles),
        "current": None if d.current_bundle is None else index[d.current_bundle],
        "p50": r4(d.p50_ms), "acc": r4(d.accuracy), "reports": d.reports,
        "last": _iso(d.last_report_at), "interval": r4(d.interval_s), "drift": d.drifting,
        "history": [[index[s.bundle_digest], _iso(s.first_at), _iso(s.last_at), s.windows]
                    for s in d.history],
    }  # fmt: skip


def _series(s: Series, index: dict[str, int]) -> dict[str, Any]:
    # Times as bucket numbers: the page puts point k at start + (k + 0.5) * width * merge.
    out: dict[str, Any] = {
        "b": index[s.bundle_digest],
        "m": s.merge,
        "k": list(s.buckets),
        "n": list(s.windows),
    }
    for name, short in zip(_SERIES_FIELDS, _SHORT, strict=True):
        values = _r(getattr(s, name))
        if any(v is not None for v in values):
            out[short] = values
    return out


def _comparison(c: Any) -> dict[str, Any]:
    pct = c.change_pct
    return {
        "profile": c.profile,
        "a": c.a_label,
        "b": c.b_label,
        "enough": c.enough,
        "points": [[p.device_id, r4(100 * (p.ratio - 1))] for p in c.pairs],
        "change": None if pct is None else [r4(v) for v in pct],
    }


def _drift(d: Any, index: dict[str, int], references: dict[Any, int]) -> dict[str, Any]:
    key = (f"{d.bundle_digest}/{d.artifact}", d.reference_confidence, d.reference_classes)
    ref = references.setdefault(key, len(references)) if d.reference_confidence else None
    return {
        "device": d.device_id, "b": index[d.bundle_digest], "artifact": d.artifact,
        "source": d.source, "samples": d.samples, "psi": r4(d.psi),
        "threshold": r4(d.threshold), "flagged": d.flagged, "reason": d.reason,
        "conf": list(d.confidence), "cls": list(d.classes), "ref": ref,
        "series": [[k, r4(v), n] for k, v, n in d.series],
    }  # fmt: skip


def _r(values: Sequence[float | None]) -> list[float | None]:
    return [r4(v) for v in values]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")
