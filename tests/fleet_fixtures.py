"""Fleets for the fleet report's tests: reports from the shared factory, varied the way real
boards vary them (host machine, drift summaries, board selections), stored in a real store."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from report_factory import BUNDLES, BundleSpec, make_report

from edgekit.collector import Store
from edgekit.collector.snapshot import ReportFilter
from edgekit.deploy_wire import FitBudgets
from edgekit.fleet_report import FleetFigures, fleet_figures
from edgekit.rollout.evidence import evidence, fleet
from edgekit.rollout.gate import WaveVerdict, decide_wave, judge_board
from edgekit.rollout.plan import GatePolicy, plan_waves
from edgekit.rollout.repository import RolloutDb
from edgekit.schema import Report

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
# A second build per profile, as a rebuild would make it.
V2 = tuple(
    replace(
        b,
        bundle_id=b.bundle_id + "-v2",
        est_latency_ms=b.est_latency_ms * 0.8,
        quantized=b.quantized - 0.1,
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


def figures_of(url: str, **filters: Any) -> FleetFigures:
    """The fleet report's figures of the store at ``url``, read as ``edgekit report`` does."""
    with Store(url, create=False) as store:
        return fleet_figures(store.snapshot(filters=ReportFilter(**filters)))


def store_judged_rollout(
    url: str, rollout_id: str, *, old: BundleSpec, new: BundleSpec, speeds: dict[str, float]
) -> WaveVerdict:
    """A rollout of ``new`` to boards running ``old`` (``speeds``: each board's p50 on ``new``
    over its p50 on ``old``), in one wave judged by the real gate on three windows a side."""
    policy = GatePolicy(windows=3, p50_ratio=1.5, accuracy_drop_pt=1.0)
    devices = sorted(speeds)
    p50 = {device: 2.0 + i for i, device in enumerate(devices)}  # boards of different speed
    with Store(url) as store:
        for device in devices:
            for seq in range(policy.windows):
                store.add_report(report(device, seq, bundle=old, p50_ms=p50[device]))
    with RolloutDb(url) as db:
        with db.reading("a test's rollout") as conn:
            boards = {b.device_id: b for b in fleet(conn)}
        db.create(_rollout_row(rollout_id, new, policy),
                  plan_waves(devices, canary="100%", waves="100%"), boards)  # fmt: skip
        lease = (rollout_id, "test", 60.0)
        db.acquire(*lease)
        sent_at = db.mark_wave_sent(lease, 0, set())
        with Store(url) as store:
            for device in devices:
                for seq in range(policy.windows, 2 * policy.windows):
                    window = report(device, seq, bundle=new, p50_ms=p50[device] * speeds[device])
                    store.add_report(window, received_at=sent_at + timedelta(seconds=seq))
        with db.reading("a test's rollout") as conn:
            found = evidence(conn, db.targets(rollout_id, wave=0), digest=new.digest,
                             windows=policy.windows)  # fmt: skip
        budget = policy.accuracy_drop_pt or 0.0
        judged = tuple(judge_board(b, policy, budget_pt=budget) for b in found)
        decided = decide_wave(judged, policy, timed_out=False)
        assert decided is not None, "every board of the wave has its windows"
        verdict = WaveVerdict(
            wave=0, label="canary", passed=decided[0], reason=decided[1],
            windows=policy.windows, p50_ratio_limit=policy.p50_ratio, accuracy_budget_pt=budget,
            max_failures=policy.max_failures, boards=judged,
            decided_at=sent_at + timedelta(minutes=1),
        )  # fmt: skip
        db.decide_wave(lease, verdict)
    return verdict


def _rollout_row(rollout_id: str, bundle: BundleSpec, policy: GatePolicy) -> dict[str, object]:
    return {
        "rollout_id": rollout_id,
        "bundle_digest": bundle.digest,
        "bundle_id": bundle.bundle_id,
        "profile": bundle.profile,
        "archive_sha256": "0" * 64,
        "archive_size": 1000,
        "url": f"http://store.invalid/{bundle.digest}.tar.gz",
        "signature_required": True,
        "selector": f"--profile {bundle.profile}",
        "budgets_json": FitBudgets(max_model_mb=1, max_ram_mb=1).model_dump_json(),
        "gate_json": policy.model_dump_json(),
    }
