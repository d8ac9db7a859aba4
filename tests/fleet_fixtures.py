"""Fleets for the fleet report's tests: reports from the shared factory, varied the way real
boards vary them (host machine, drift summaries, board selections), stored in a real store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from report_factory import BUNDLES, BundleSpec, make_report

from edgekit.collector import Store
from edgekit.schema import Report

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
# A second build per profile, as a rebuild would make it.
V2 = tuple(
    BundleSpec(
        b.bundle_id + "-v2",
        b.profile,
        b.est_latency_ms * 0.8,
        b.fp32,
        b.quantized - 0.1,
        b.model_bytes,
    )
    for b in BUNDLES
)


def summary(classes: list[int], *, mean: float = 0.3, std: float = 0.35) -> dict[str, Any]:
    """A drift summary (the wire form) whose confidences sit high, as a trained model's do."""
    n = sum(classes)
    confidence = [0] * 10
    confidence[9] = n - n // 4
    confidence[6] = n // 4
    return {"samples": n, "confidence": confidence, "classes": classes,
            "channel_mean": [mean], "channel_std": [std]}  # fmt: skip


REFERENCE = summary([20] * 10)


def report(
    device: str,
    seq: int,
    *,
    bundle: BundleSpec = BUNDLES[0],
    p50_ms: float = 3.0,
    accuracy: float | None = 90.0,
    machine: str = "aarch64",
    minutes: float = 1.0,
    drift: dict[str, Any] | None = None,
    selection: dict[str, Any] | None = None,
) -> Report:
    """One window of ``device``, ``seq`` windows (of ``minutes``) after START."""
    data = json.loads(make_report(device, sequence=seq, bundle=bundle, p50_ms=p50_ms,
                                  accuracy=accuracy).to_json())  # fmt: skip
    started = START + timedelta(minutes=seq * minutes)
    data["started_at"] = started.isoformat()
    data["finished_at"] = (started + timedelta(seconds=30)).isoformat()
    data["host"]["machine"] = machine
    if drift is not None:
        data["drift"] = drift
    if selection is not None:
        data["selection"] = selection
    return Report.model_validate(data)


@dataclass(frozen=True)
class Board:
    """A simulated board: which bundles it runs (in turn), how fast, on which host."""

    device_id: str
    bundles: tuple[BundleSpec, ...] = (BUNDLES[0],)
    speed: float = 1.0
    machine: str = "aarch64"
    windows: int = 6
    status: str | None = "online"


def store_fleet(url: str, boards: list[Board], **extra: Any) -> None:
    """Store every board's windows: each bundle of a board gets ``windows`` windows in turn."""
    with Store(url) as store:
        for board in boards:
            seq = 0
            for bundle in board.bundles:
                for _ in range(board.windows):
                    p50 = bundle.est_latency_ms * board.speed * (1 + 0.01 * (seq % 3))
                    window = report(board.device_id, seq, bundle=bundle, p50_ms=p50,
                                    machine=board.machine, **extra)  # fmt: skip
                    # Received as it finished: these boards reported in 2025, not just now.
                    store.add_report(window, received_at=window.finished_at + timedelta(seconds=1))
                    seq += 1
            if board.status is not None:
                store.add_status(board.device_id, board.status)
