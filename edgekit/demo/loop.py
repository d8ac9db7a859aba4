"""The demo's story: train, build for two boards, run a simulated fleet, write the fleet report.

Train a small CNN on scikit-learn's digits (shipped in the package), build it for two boards,
start a collector service with an embedded MQTT broker (SQLite), run simulated boards (real
``edgekit daemon`` processes) for a few windows, roll a second variant out to one board type
with a canary while they run, and write the fleet report.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.demo.fleet import Board, run_fleet
from edgekit.demo.rollout import DemoRollout
from edgekit.errors import EdgekitError
from edgekit.progress import Progress, SilentProgress

if TYPE_CHECKING:
    from edgekit.collector import FleetSnapshot
    from edgekit.fleet_report import FleetFigures

PROFILES = ("rpi4", "jetson-nano")


@dataclass(frozen=True)
class DemoResult:
    """Where the demo left its outputs, and what reached the collector."""

    out_dir: Path
    bundles: tuple[Path, ...]
    database: Path
    report: Path
    devices: int
    reports_sent: int
    reports_stored: int
    figures: FleetFigures


def run_demo(
    out_dir: Path,
    *,
    devices_per_profile: int = 2,
    reports: int = 4,
    interval_s: float = 1.0,
    epochs: int = 15,
    progress: Progress | None = None,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo into ``out_dir`` (created, or reused if it holds an earlier demo)."""
    from edgekit.fleet_report import fleet_figures, write_report
    from edgekit.vocab import ReportFormat

    progress = progress or SilentProgress()
    # Absolute: the simulated boards run in out_dir, so relative paths would point elsewhere.
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()) and not (out_dir / "demo-model.keras").exists():
        raise EdgekitError(f"{out_dir} is not empty and holds no earlier demo; pick another --out")
    if _clear_earlier_run(out_dir):
        say(f"{out_dir} held an earlier demo: starting afresh (its database, outboxes, logs "
            "and report removed)")  # fmt: skip
    _train(out_dir, epochs=epochs, progress=progress)
    bundles = [_build(out_dir, name, progress=progress, say=say) for name in PROFILES]
    boards = [
        Board(f"{name}-{i + 1:02d}", bundle)
        for name, bundle in zip(PROFILES, bundles, strict=True)
        for i in range(devices_per_profile)
    ]
    # A second variant for one board type, rolled out with a canary while the boards run.
    rollout = DemoRollout(out_dir, progress=progress, say=say)
    v2 = rollout.build_variant()
    database = out_dir / "edgekit.db"
    sent, stored = run_fleet(
        boards,
        out_dir=out_dir,
        database=database,
        reports=reports,
        interval_s=interval_s,
        progress=progress,
        say=say,
        then=lambda broker, db_url: rollout.run(v2, broker=broker, db_url=db_url),
    )
    figures = fleet_figures(_snapshot(database))
    report = write_report(figures, out_dir / "report.html", ReportFormat.HTML,
                          source=f"sqlite:///{database}")  # fmt: skip
    return DemoResult(out_dir, tuple(bundles), database, report, len(boards), sent, stored,
                      figures)  # fmt: skip


# What a demo run leaves behind that a second run must not add to: a second demo's report shows
# its own boards' windows, not the sum of both runs.
_RUN_OUTPUTS = ("edgekit.db", "edgekit.db-wal", "edgekit.db-shm", "report.html")
_RUN_FOLDERS = ("outbox", "logs")


def _clear_earlier_run(out_dir: Path) -> bool:
    """Remove an earlier run's database, outboxes, logs and report; True if there were any."""
    found = False
    for name in _RUN_OUTPUTS:
        if (out_dir / name).exists():
            (out_dir / name).unlink()
            found = True
    for name in _RUN_FOLDERS:
        if (out_dir / name).is_dir():
            shutil.rmtree(out_dir / name)
            found = True
    return found


def _train(out_dir: Path, *, epochs: int, progress: Progress) -> None:
    """Save the data (calibration, eval) and a CNN trained on it into ``out_dir``."""
    from edgekit.converters.examples import digits, small_cnn, train

    split = digits()
    np.savez(out_dir / "calibration.npz", x=split.x_train[:300], y=split.y_train[:300])
    np.savez(out_dir / "eval.npz", x=split.x_test, y=split.y_test)
    model = small_cnn(split.x_train.shape[1:], 10)
    with progress.task("Training a CNN on scikit-learn's digits", total=epochs) as task:
        train(model, split.x_train, split.y_train, epochs=epochs,
              on_epoch=lambda _e, _a: task.advance())  # fmt: skip
    model.save(out_dir / "demo-model.keras")


def _build(out_dir: Path, profile: str, *, progress: Progress, say: Callable[[str], None]) -> Path:
    """Build the trained model for ``profile``; the bundle's folder."""
    from edgekit.converters.pipeline import BuildRequest, build
    from edgekit.profiles import load_profile

    bundle = out_dir / "bundles" / profile
    result = build(
        BuildRequest(
            model=out_dir / "demo-model.keras",
            profile=load_profile(profile),
            out_dir=bundle,
            calibration=out_dir / "calibration.npz",
            eval_data=out_dir / "eval.npz",
            allow_over_budget=True,
        ),
        progress=progress,
    )
    formats = ", ".join(a.artifact.file for a in result.artifacts)
    say(f"built {profile}: {formats} -> {bundle}")
    return bundle


def _snapshot(database: Path) -> FleetSnapshot:
    from edgekit.collector import Store

    with Store(f"sqlite:///{database}") as store:
        return store.snapshot()
