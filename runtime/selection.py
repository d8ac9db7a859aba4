"""Choosing, on the board, which of a bundle's candidates to run: measured here, once.

A bundle built for a board the build host cannot stand for carries its best few candidates
(``manifest.selection == "board"``). At first start the board runs each that an installed
interpreter can load: its accuracy on the bundle's eval sample (it must stay within the profile's
budget of the build's fp32 figure on the same samples), then their latency side by side, taking
turns, within a time budget. The fastest within budget runs. The choice is remembered in a small
JSON file keyed by the manifest's digest and this host, so a restart does not measure again;
``reselect`` forces it. Every report then carries the per-candidate figures.
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import RuntimeBackendError
from edgekit.manifest import Artifact, Manifest
from edgekit.runtime.backend import Backend, installed_interpreters
from edgekit.runtime.side_by_side import race
from edgekit.schema import CandidateResult, Selection, utc_now
from edgekit.vocab import MetricName, SelectionSite

DEFAULT_SECONDS = 20.0


@dataclass(frozen=True)
class Loaded:
    """A candidate an installed interpreter could load."""

    artifact: Artifact
    backend: Backend
    init_ms: float


def applies(manifest: Manifest) -> bool:
    """True when the bundle asks the board to choose among several candidates."""
    return manifest.selection is SelectionSite.BOARD and len(manifest.artifacts) > 1


def host_key() -> str:
    """What makes this host this host, for the cache: name, CPU and cores, and the interpreters
    installed (a choice measured with ONNX Runtime present says nothing where it is not, and a
    new interpreter version may change which candidate is fastest)."""
    parts = (platform.node(), platform.machine(), platform.processor(), str(os.cpu_count()),
             *installed_interpreters())  # fmt: skip
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """Where choices are remembered: $EDGEKIT_CACHE_DIR is read by the CLI; else XDG's."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgekit" / "selection"


def remembered(cache_dir: Path, manifest_digest: str) -> Selection | None:
    """The choice made earlier on this host for this bundle, if any (a damaged file is none)."""
    path = _cache_file(cache_dir, manifest_digest)
    try:
        return Selection.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None


def remember(cache_dir: Path, manifest_digest: str, selection: Selection) -> None:
    """Keep the choice (written atomically: a crash leaves the old file or the new one)."""
    path = _cache_file(cache_dir, manifest_digest)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, delete=False) as tmp:
            tmp.write(selection.model_dump_json().encode())
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, path)
    except OSError:
        pass  # no cache is no harm: the next start measures again


def select(
    loaded: Sequence[Loaded],
    manifest: Manifest,
    *,
    feed: Callable[[Loaded], list],
    score: Callable[[Loaded], tuple[str, float] | None],
    max_seconds: float = DEFAULT_SECONDS,
    refused: Sequence[CandidateResult] = (),
) -> Selection:
    """Score every loaded candidate on the eval sample, time those within budget side by side,
    and choose the fastest; ``refused`` are candidates that could not be loaded here."""
    budget = manifest.runtime.max_accuracy_drop_pt if manifest.runtime else None
    results: dict[str, CandidateResult] = {}
    eligible: list[Loaded] = []
    for one in loaded:
        scored = score(one)
        within, reason = _within(one.artifact, scored, budget)
        value = None if scored is None else scored[1]
        results[one.artifact.file] = CandidateResult(
            artifact=one.artifact.file, variant=one.artifact.variant, p50_ms=None,
            accuracy=value, within_budget=within, reason=reason,
        )  # fmt: skip
        if within:
            eligible.append(one)
    if not eligible:
        raise RuntimeBackendError(
            "no candidate of the bundle is within its accuracy budget here: "
            + "; ".join(f"{r.artifact}: {r.reason}" for r in results.values())
        )
    # Two rounds at most (the second among the contenders alone), within max_seconds in all.
    timings = race(
        [e.backend for e in eligible],
        [feed(e) for e in eligible],
        seconds_per_model=max_seconds / (2 * len(eligible)),
    )
    for one, timing in zip(eligible, timings, strict=True):
        results[one.artifact.file] = results[one.artifact.file].model_copy(
            update={"p50_ms": timing.p50_ms}
        )
    fastest = min(zip(eligible, timings, strict=True), key=lambda pair: pair[1].p50_ms)[0]
    return Selection(
        chosen=fastest.artifact.file,
        measured_at=utc_now(),
        candidates=(*results.values(), *refused),
    )


def _within(
    artifact: Artifact, scored: tuple[str, float] | None, budget: float | None
) -> tuple[bool, str]:
    """Whether the accuracy measured here is within budget of the build's fp32 on the sample."""
    on_sample = artifact.metrics.sample_accuracy
    if scored is None or on_sample is None or on_sample.fp32 is None or budget is None:
        return True, "accuracy not comparable; judged by latency"
    name, value = scored
    if name == MetricName.SQNR_DB:
        return True, "SQNR has no budget in points"
    drop = on_sample.fp32 - value
    if drop > budget:
        return False, f"{name} {value:.2f} is {drop:.2f} pt below fp32, budget {budget:g}"
    return True, f"{name} {value:.2f} ({drop:+.2f} pt from fp32)"


def _cache_file(cache_dir: Path, manifest_digest: str) -> Path:
    return cache_dir / f"{manifest_digest[:32]}-{host_key()}.json"
