"""Estimates that learn: a profile's throughput figures fitted to what the fleet measured.

Every report carries what its artifact's latency estimate was computed from (int8 MACs, int8
depthwise MACs, float MACs, ops) beside the p50 the board measured. The estimate is linear in
the inverse throughputs and the per-op cost, so for each runtime a non-negative least-squares fit
(SciPy's ``nnls``) over one point per (board, bundle) — the median p50 of its windows — gives the
figures that explain the fleet best. Figures the data cannot tell (no float MACs anywhere, say)
keep the profile's values.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import select

from edgekit._optional import require
from edgekit.collector.engine import open_database
from edgekit.collector.tables import ReportRow
from edgekit.errors import StoreError
from edgekit.figures import EstimateInputs
from edgekit.profiles import DeviceProfile, Throughput, parse_profile
from edgekit.vocab import BackendName, ModelFormat

# The fit needs clearly more points than figures it fits.
MIN_POINTS = 6
_FIELDS = ("int8_gmacs", "int8_depthwise_gmacs", "fp32_gmacs", "op_overhead_us")


@dataclass(frozen=True)
class Point:
    """One board running one bundle: what its estimate used and what it measured."""

    runtime: BackendName
    inputs: EstimateInputs
    measured_ms: float


@dataclass(frozen=True)
class Fit:
    """The figures fitted for one runtime, and the estimate error before and after."""

    runtime: BackendName
    before: Throughput | None
    after: Throughput
    points: int
    error_before: float | None  # median |estimate - measured| / measured
    error_after: float


def points_from_db(url: str, profile: DeviceProfile) -> list[Point]:
    """One point per (board, bundle) of ``profile`` in the collector database at ``url``."""
    db = open_database(url, create=False, timeout_s=10.0)
    r = ReportRow.__table__.c
    query = select(r.device_id, r.bundle_digest, r.format, r.p50_ms, r.raw_json).where(
        r.profile == profile.name
    )
    p50s: dict[tuple[str, str], list[float]] = defaultdict(list)
    features: dict[str, tuple[BackendName, EstimateInputs] | None] = {}
    try:
        with db.guard("reading the fleet's measurements"), db.engine.connect() as conn:
            for row in conn.execute(query):
                if row.bundle_digest not in features:
                    inputs = _inputs_of(row.raw_json)
                    runtime = profile.runtime_for(ModelFormat(row.format))
                    features[row.bundle_digest] = None if inputs is None else (runtime, inputs)
                if features[row.bundle_digest] is not None:
                    p50s[row.device_id, row.bundle_digest].append(float(row.p50_ms))
    finally:
        db.engine.dispose()
    points = []
    for (_, digest), values in p50s.items():
        runtime, inputs = features[digest]  # type: ignore[misc]
        points.append(Point(runtime, inputs, float(np.median(values))))
    return points


def fit(profile: DeviceProfile, points: Sequence[Point]) -> list[Fit]:
    """The fitted figures of each runtime with enough points."""
    by_runtime: dict[BackendName, list[Point]] = defaultdict(list)
    for point in points:
        by_runtime[point.runtime].append(point)
    fits = []
    for runtime, mine in sorted(by_runtime.items()):
        if len(mine) < MIN_POINTS:
            continue
        before = profile.throughput.get(runtime)
        after = _fit_one(mine, before)
        fits.append(
            Fit(runtime, before, after, len(mine),
                None if before is None else _error(mine, before), _error(mine, after))
        )  # fmt: skip
    if not fits:
        counts = ", ".join(f"{rt}: {len(p)}" for rt, p in by_runtime.items()) or "none"
        raise StoreError(
            f"not enough measurements of profile {profile.name} to calibrate: need {MIN_POINTS} "
            f"(board, bundle) pairs with estimate inputs per runtime, have {counts} (bundles built "
            "by edgekit 0.2 or later record them)"
        )
    return fits


def calibrated_profile_text(source_text: str, fits: Iterable[Fit], *, points_note: str) -> str:
    """The profile's TOML with each fitted runtime's [throughput.<runtime>] table replaced."""
    text = source_text
    for f in fits:
        header = re.escape(f"[throughput.{f.runtime}]")
        text = re.sub(rf"(?ms)^{header}\n.*?(?=^\[|\Z)", "", text)
        text = text.rstrip("\n") + "\n\n" + _table(f, points_note) + "\n"
    parse_profile(text.encode(), source="calibrated profile")  # it must load as it is written
    return text


def _fit_one(points: Sequence[Point], before: Throughput | None) -> Throughput:
    """NNLS over the columns the data varies; the other figures stay the profile's."""
    nnls = require("scipy.optimize", extra="build", package="scipy").nnls
    a = np.array(
        [[p.inputs.int8_macs, p.inputs.int8_depthwise_macs, p.inputs.float_macs, p.inputs.ops]
         for p in points],
        dtype=np.float64,
    )  # fmt: skip
    b = np.array([p.measured_ms for p in points])
    if before is not None and before.int8_depthwise_gmacs is None:
        a[:, 0] += a[:, 1]  # the profile counts depthwise with the rest of int8: keep doing so
        a[:, 1] = 0.0
    used = [j for j in range(4) if a[:, j].any()]
    scale = a[:, used].max(axis=0)
    solution, _ = nnls(a[:, used] / scale, b)
    coefficient = dict.fromkeys(range(4), 0.0)
    coefficient.update({j: solution[k] / scale[k] for k, j in enumerate(used)})
    old = before or Throughput(int8_gmacs=1.0, fp32_gmacs=1.0)
    fitted = replace(old, notes=f"calibrated from {len(points)} fleet measurements")
    # ms per MAC -> GMAC/s; ms per op -> us per op. A zero coefficient says nothing: keep.
    if coefficient[0] > 0:
        fitted = replace(fitted, int8_gmacs=1.0 / (coefficient[0] * 1e6))
    if coefficient[1] > 0:
        fitted = replace(fitted, int8_depthwise_gmacs=1.0 / (coefficient[1] * 1e6))
    if coefficient[2] > 0:
        fitted = replace(fitted, fp32_gmacs=1.0 / (coefficient[2] * 1e6))
    if 3 in used:
        fitted = replace(fitted, op_overhead_us=coefficient[3] * 1e3)
    return fitted


def _error(points: Sequence[Point], figures: Throughput) -> float:
    errors = [abs(figures.predicted_ms(p.inputs) - p.measured_ms) / p.measured_ms for p in points]
    return float(np.median(errors))


def _inputs_of(raw_json: str) -> EstimateInputs | None:
    try:
        build = json.loads(raw_json)["build"]
        values = build.get("estimate_inputs")
        return None if values is None else EstimateInputs.model_validate(values)
    except (ValueError, KeyError, TypeError):
        return None


def _table(f: Fit, note: str) -> str:
    lines = [
        f"# calibrated {datetime.now(UTC).date()} from {f.points} (board, bundle) pairs {note}: "
        f"median estimate error "
        + ("(no figures)" if f.error_before is None else f"{f.error_before:.0%}")
        + f" -> {f.error_after:.0%}",
        f"[throughput.{f.runtime}]",
    ]
    for name in _FIELDS:
        value = getattr(f.after, name)
        if value is not None:
            lines.append(f"{name} = {float(value):.6g}")
    lines.append(f'notes = "{f.after.notes}"')
    return "\n".join(lines)
