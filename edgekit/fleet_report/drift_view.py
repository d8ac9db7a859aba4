"""Drift against the build's reference: PSI of confidence and predicted classes, input shift.

Per board, bundle artifact and source (the eval sample, or watched-folder inputs), the windows'
summaries are added up and compared with the reference the build stored in the manifest. The
population stability index (PSI) is biased upwards for small samples: two samples of one
population give about (bins - 1) * (1/n + 1/m). A board is flagged only when its PSI exceeds
both the conventional 0.25 and three times that noise level, or when the inputs' mean moved by
more than half a reference standard deviation, or their spread by more than 1.5x.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from edgekit.collector.drift_store import EVAL_SOURCE
from edgekit.collector.snapshot import DriftCell, DriftCounts, DriftReference, FleetSnapshot
from edgekit.drift import psi, psi_noise

PSI_LARGE = 0.25
NOISE_FACTOR = 3.0
MEAN_SHIFT_LIMIT = 0.5  # reference standard deviations
SPREAD_RATIO_LIMIT = 1.5
MIN_SAMPLES = 30
MIN_BUCKET_SAMPLES = 10


@dataclass(frozen=True, slots=True)
class DriftScore:
    """One board's drift on one bundle artifact and source, over the report's period."""

    device_id: str
    bundle_digest: str
    artifact: str
    source: str
    windows: int
    samples: int
    psi_confidence: float | None
    psi_classes: float | None
    noise: float | None
    threshold: float | None
    mean_shift: float | None  # largest |mean - reference mean| / reference std over channels
    spread_ratio: float | None  # largest std / reference std (or its inverse) over channels
    flagged: bool
    reason: str
    confidence: tuple[int, ...]
    classes: tuple[int, ...]
    reference_confidence: tuple[int, ...]
    reference_classes: tuple[int, ...]
    series: tuple[tuple[int, float, int], ...]  # (bucket, PSI, samples)

    @property
    def psi(self) -> float | None:
        """The larger of the two PSIs."""
        values = [v for v in (self.psi_confidence, self.psi_classes) if v is not None]
        return max(values) if values else None


def drift_scores(snapshot: FleetSnapshot) -> tuple[DriftScore, ...]:
    """Every board's drift score, flagged boards first."""
    references = {(r.bundle_digest, r.artifact): r for r in snapshot.drift_references}
    groups: dict[tuple[str, str, str, str], list[DriftCell]] = {}
    for cell in snapshot.drift_cells:
        key = (cell.device_id, cell.bundle_digest, cell.artifact, cell.source)
        groups.setdefault(key, []).append(cell)
    scores = [_score(key, cells, references.get((key[1], key[2]))) for key, cells in groups.items()]
    scores.sort(key=lambda s: (not s.flagged, s.source == EVAL_SOURCE, s.device_id, s.source))
    return tuple(scores)


def total(counts: Iterable[DriftCounts]) -> DriftCounts:
    """Counts added up (channel statistics where every part has the same channels)."""
    parts = list(counts)
    channels = min(p.channels for p in parts)
    return DriftCounts(
        classes=max(p.classes for p in parts),
        channels=channels,
        samples=sum(p.samples for p in parts),
        confidence=tuple(map(sum, zip(*(p.confidence for p in parts), strict=True))),
        class_bins=tuple(map(sum, zip(*(p.class_bins for p in parts), strict=True))),
        sum_mean=tuple(sum(p.sum_mean[c] for p in parts) for c in range(channels)),
        sum_square=tuple(sum(p.sum_square[c] for p in parts) for c in range(channels)),
    )


def _score(
    key: tuple[str, str, str, str], cells: list[DriftCell], reference: DriftReference | None
) -> DriftScore:
    device, digest, artifact, source = key
    seen = total(c.counts for c in cells)
    windows = sum(c.windows for c in cells)
    empty = (device, digest, artifact, source, windows, seen.samples)
    bins = min(seen.classes, len(seen.class_bins))
    if reference is None:
        return DriftScore(*empty, None, None, None, None, None, None, False,
                          "no reference in the bundle's manifest", seen.confidence,
                          seen.class_bins[:bins], (), (), ())  # fmt: skip
    ref = reference.counts
    bins = min(max(seen.classes, ref.classes), len(seen.class_bins))
    conf = psi(seen.confidence, ref.confidence)
    cls = psi(seen.class_bins[:bins], ref.class_bins[:bins])
    noise = max(
        psi_noise(seen.confidence, ref.confidence),
        psi_noise(seen.class_bins[:bins], ref.class_bins[:bins]),
    )
    threshold = max(PSI_LARGE, NOISE_FACTOR * noise)
    shift, spread = _input_shift(seen, ref)
    reasons = []
    if seen.samples >= MIN_SAMPLES:
        if max(conf, cls) > threshold:
            which = "confidence" if conf >= cls else "predicted classes"
            reasons.append(f"PSI of {which} {max(conf, cls):.2f} > {threshold:.2f}")
        if shift is not None and shift > MEAN_SHIFT_LIMIT:
            reasons.append(f"input mean moved {shift:.2f} reference std")
        if spread is not None and spread > SPREAD_RATIO_LIMIT:
            reasons.append(f"input spread changed {spread:.2f}x")
    reason = "; ".join(reasons) or (
        f"only {seen.samples} samples (needs {MIN_SAMPLES})"
        if seen.samples < MIN_SAMPLES
        else "within noise"
    )
    return DriftScore(
        *empty, conf, cls, noise, threshold, shift, spread, bool(reasons), reason,
        seen.confidence, seen.class_bins[:bins], ref.confidence, ref.class_bins[:bins],
        _series(cells, ref, bins),
    )  # fmt: skip


def _input_shift(seen: DriftCounts, ref: DriftCounts) -> tuple[float | None, float | None]:
    channels = min(seen.channels, ref.channels)
    if not channels or not seen.samples or not ref.samples:
        return None, None
    shift = spread = 0.0
    for c in range(channels):
        m_seen, m_ref = seen.sum_mean[c] / seen.samples, ref.sum_mean[c] / ref.samples
        sd_seen = math.sqrt(max(seen.sum_square[c] / seen.samples - m_seen**2, 0.0))
        sd_ref = math.sqrt(max(ref.sum_square[c] / ref.samples - m_ref**2, 0.0))
        if sd_ref <= 1e-12:
            continue
        shift = max(shift, abs(m_seen - m_ref) / sd_ref)
        ratio = sd_seen / sd_ref
        spread = max(spread, ratio, 1 / ratio if ratio > 0 else math.inf)
    return shift, spread


def _series(
    cells: list[DriftCell], ref: DriftCounts, bins: int
) -> tuple[tuple[int, float, int], ...]:
    by_bucket: dict[int, list[DriftCounts]] = {}
    for cell in cells:
        by_bucket.setdefault(cell.bucket, []).append(cell.counts)
    points = []
    for bucket in sorted(by_bucket):
        seen = total(by_bucket[bucket])
        if seen.samples < MIN_BUCKET_SAMPLES:
            continue
        value = max(
            psi(seen.confidence, ref.confidence),
            psi(seen.class_bins[:bins], ref.class_bins[:bins]),
        )
        points.append((bucket, value, seen.samples))
    return tuple(points)
