"""Rollouts in the collector's database (SQLite and PostgreSQL): one owner at a time through the
lease, a controller that lost it writes nothing, events are stored once and never move a board
back, the gate reads each board's windows on both bundles, and the fleet report's queries."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from report_factory import BundleSpec, make_report

from edgekit.collector import Store
from edgekit.collector.rollout_queries import device_bundles, rollout_timeline
from edgekit.deploy_wire import DeploymentEvent, DeploymentPhase, FitBudgets
from edgekit.rollout.evidence import evidence, fleet
from edgekit.rollout.gate import WaveVerdict, judge_board
from edgekit.rollout.plan import GatePolicy, plan_waves
from edgekit.rollout.repository import LeaseLost, RolloutDb
from edgekit.rollout.states import RolloutState, TargetState, WaveState
from edgekit.schema import utc_now

OLD = BundleSpec("mlp-old", "x86-64", 0.01, 97.5, 97.5, 4_000)
NEW = BundleSpec("mlp-new", "x86-64", 0.01, 98.0, 98.0, 4_000)
BOARDS = ["pi-00", "pi-01", "pi-02"]


def _row(rollout_id: str) -> dict[str, object]:
    return {
        "rollout_id": rollout_id,
        "bundle_digest": NEW.digest,
        "bundle_id": NEW.bundle_id,
        "profile": "x86-64",
        "archive_sha256": "0" * 64,
        "archive_size": 1000,
        "url": f"http://store/{NEW.digest}.tar.gz",
        "signature_required": True,
        "selector": "--devices pi-*",
        "budgets_json": FitBudgets(max_model_mb=1, max_ram_mb=1).model_dump_json(),
        "gate_json": GatePolicy(accuracy_drop_pt=1.0).model_dump_json(),
    }


@pytest.fixture
def db(store_url):
    with Store(store_url) as store:
        for i, device in enumerate(BOARDS):
            for seq in range(3):
                store.add_report(make_report(device, sequence=seq, bundle=OLD, p50_ms=1.0 + i))
    with RolloutDb(store_url) as rollouts:
        yield rollouts


def _create(db: RolloutDb) -> str:
    rollout_id = "r" + uuid.uuid4().hex[:8]
    with db.reading("test") as conn:
        boards = {b.device_id: b for b in fleet(conn)}
    db.create(_row(rollout_id), plan_waves(BOARDS, canary="34%", waves="100%"), boards)
    return rollout_id


def test_a_rollout_is_created_with_its_waves_and_the_bundle_each_board_ran(db):
    rollout_id = _create(db)
    rollout = db.get(rollout_id)
    assert rollout.state is RolloutState.RUNNING
    assert rollout.gate.accuracy_drop_pt == 1.0
    assert [(w.label, w.size, w.state) for w in db.waves(rollout_id)] == [
        ("canary", 2, WaveState.PENDING),
        ("100%", 1, WaveState.PENDING),
    ]
    targets = db.targets(rollout_id)
    assert [(t.device_id, t.wave, t.from_digest) for t in targets] == [
        ("pi-00", 0, OLD.digest),
        ("pi-01", 0, OLD.digest),
        ("pi-02", 1, OLD.digest),
    ]
    assert db.get("r-unknown") is None


def test_one_owner_at_a_time_and_a_lost_lease_writes_nothing(db):
    rollout_id = _create(db)
    assert db.acquire(rollout_id, "controller-a", 1.0) is None
    held = db.acquire(rollout_id, "controller-b", 1.0)
    assert held is not None
    assert held.owner == "controller-a"
    assert db.acquire(rollout_id, "controller-a", 1.0) is None  # its own: renewed
    time.sleep(1.3)  # controller-a is paused past its lease
    assert db.acquire(rollout_id, "controller-b", 30.0) is None
    lease_a = (rollout_id, "controller-a", 1.0)
    with pytest.raises(LeaseLost, match="no longer held by controller-a"):
        db.renew(*lease_a)
    with pytest.raises(LeaseLost):
        db.mark_wave_sent(lease_a, 0, set())
    assert db.waves(rollout_id)[0].state is WaveState.PENDING  # nothing was written
    db.mark_wave_sent((rollout_id, "controller-b", 30.0), 0, {"pi-01"})
    wave = db.waves(rollout_id)[0]
    assert wave.state is WaveState.SENT
    deferred = {t.device_id: t.deferred for t in db.targets(rollout_id, wave=0)}
    assert deferred == {"pi-00": False, "pi-01": True}
    db.release(rollout_id, "controller-b")
    assert db.get(rollout_id).owner is None


def _event(rollout_id: str, device: str, phase: DeploymentPhase, **changes) -> DeploymentEvent:
    fields = dict(
        message_id=uuid.uuid4().hex,
        device_id=device,
        rollout_id=rollout_id,
        bundle_digest=NEW.digest,
        phase=phase,
        at=utc_now(),
    )
    return DeploymentEvent(**{**fields, **changes})


def test_events_are_stored_once_and_never_move_a_board_back(db):
    rollout_id = _create(db)
    db.acquire(rollout_id, "me", 30.0)
    db.mark_wave_sent((rollout_id, "me", 30.0), 0, set())
    healthy = _event(rollout_id, "pi-00", DeploymentPhase.HEALTHY)
    late = _event(rollout_id, "pi-00", DeploymentPhase.DOWNLOADING, percent=50.0)
    other = _event("r-other", "pi-01", DeploymentPhase.FAILED, reason="not ours")
    assert db.record_events(rollout_id, [healthy, healthy, late, other]) == 3
    states = {t.device_id: t.state for t in db.targets(rollout_id)}
    assert states["pi-00"] is TargetState.HEALTHY  # the late 'downloading' did not undo it
    assert states["pi-01"] is TargetState.SENT  # another rollout's event
    with db.reading("test") as conn:
        view = rollout_timeline(conn)[0]
    assert view.events == 2  # its own; the other rollout's event is kept under that one


def test_the_gate_pairs_each_board_with_its_previous_bundle(db, store_url):
    rollout_id = _create(db)
    db.acquire(rollout_id, "me", 30.0)
    sent_at = db.mark_wave_sent((rollout_id, "me", 30.0), 0, set())
    with Store(store_url) as store:
        after = sent_at + timedelta(seconds=1)
        for seq in range(3):
            # pi-00 as fast as before on the new bundle, pi-01 three times slower
            store.add_report(
                make_report("pi-00", sequence=10 + seq, bundle=NEW, p50_ms=1.0, accuracy=98.0),
                received_at=after,
            )
            store.add_report(
                make_report("pi-01", sequence=10 + seq, bundle=NEW, p50_ms=6.0, accuracy=98.0),
                received_at=after,
            )
    with db.reading("test") as conn:
        boards = evidence(conn, db.targets(rollout_id, wave=0), digest=NEW.digest, windows=3)
    policy = db.get(rollout_id).gate
    figures = {b.device_id: judge_board(b, policy, budget_pt=1.0) for b in boards}
    assert figures["pi-00"].verdict.value == "pass"
    assert figures["pi-00"].accuracy_build == 98.0  # the new bundle's build figure
    assert figures["pi-01"].verdict.value == "fail"
    assert figures["pi-01"].p50_previous_ms == pytest.approx(2.05)  # its own, not pi-00's
    assert figures["pi-01"].p50_ratio == pytest.approx(6.2 / 2.05)  # medians of the windows
    verdict = WaveVerdict(
        wave=0,
        label="canary",
        passed=False,
        reason="1 board(s) failed the gate",
        windows=3,
        p50_ratio_limit=1.5,
        accuracy_budget_pt=1.0,
        max_failures=0,
        boards=tuple(figures.values()),
        decided_at=utc_now(),
    )
    db.decide_wave((rollout_id, "me", 30.0), verdict)
    rollout = db.get(rollout_id)
    assert rollout.state is RolloutState.ROLLING_BACK
    assert rollout.reason == "wave canary: 1 board(s) failed the gate"
    with db.reading("test") as conn:
        view = rollout_timeline(conn)[0]
        running = {d.device_id: d for d in device_bundles(conn)}
    assert [w.state for w in view.waves] == ["failed", "pending"]
    assert {b.device_id: b.verdict.value for b in view.waves[0].boards} == {
        "pi-00": "pass",
        "pi-01": "fail",
    }
    assert running["pi-00"].bundle_digest == NEW.digest
    assert running["pi-00"].rollout_id == rollout_id  # the rollout that sent it there
    assert running["pi-02"].bundle_digest == OLD.digest
    assert running["pi-02"].rollout_id is None
