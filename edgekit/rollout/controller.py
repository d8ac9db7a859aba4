"""The rollout controller: runs one rollout from the database to a final state.

Each tick it stores the deployment events that arrived, then moves the rollout on:

    running       the first wave not passed: send it (pending), or judge it (sent) once its
                  boards have their windows; a failed gate turns the rollout to rolling_back
    rolling_back  send every board that was sent the bundle back to its previous one, then
                  wait for their reports from it: rolled_back (or failed, when no board ever
                  ran the bundle), with the reason
    succeeded     every wave passed (``edgekit rollback`` can still send them back)

Everything it decides is in the database before it acts on it, so a controller that is killed
is resumed by the next one from there: waves already sent are not sent again; in the wave being
judged only the boards that have not answered are sent their (retained, idempotent) command.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select

from edgekit.collector.rollout_tables import EventRow
from edgekit.deploy_wire import (
    DeployAction,
    DeployCommand,
    DeploymentEvent,
    DeploymentPhase,
    RejectedMessage,
)
from edgekit.errors import DeployError
from edgekit.mqtt import BrokerSettings
from edgekit.rollout.evidence import evidence, offline_devices, reported_since
from edgekit.rollout.gate import WaveVerdict, decide_wave, judge_board
from edgekit.rollout.messenger import Messenger
from edgekit.rollout.records import RolloutRecord, TargetRecord, WaveRecord
from edgekit.rollout.repository import RolloutDb
from edgekit.rollout.states import FINAL_STATES, RolloutState, TargetState, WaveState
from edgekit.schema import utc_now

DEFAULT_LEASE_TTL_S = 15.0
# Events a board sent while no controller was connected arrive right after the subscription.
_SETTLE_S = 1.0
_RAN = (
    DeploymentPhase.ACTIVATED,
    DeploymentPhase.MEASURING,
    DeploymentPhase.HEALTHY,
    DeploymentPhase.ROLLED_BACK,
)


class LeaseHeld(DeployError):
    """Another controller holds the rollout's lease."""


def controller_owner() -> str:
    """Who holds a lease: host, process and a random part (two controllers never match)."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class RolloutController:
    """Runs one rollout (``run``) while holding its lease."""

    def __init__(
        self,
        db: RolloutDb,
        broker: BrokerSettings,
        rollout_id: str,
        *,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
        wait_for_lease_s: float = 0.0,
        poll_s: float = 0.5,
        stop: threading.Event | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        self.db = db
        self.broker = broker
        self.rollout_id = rollout_id
        self.owner = controller_owner()
        self.lease = (rollout_id, self.owner, lease_ttl_s)
        self.lease_ttl_s = lease_ttl_s
        self.wait_for_lease_s = wait_for_lease_s
        self.poll_s = poll_s
        self.stop = stop or threading.Event()
        self._say = say
        self._messenger: Messenger | None = None
        self._renewed = 0.0

    def run(self) -> RolloutRecord:
        """Run until the rollout is final (or ``stop`` is set); the rollout as it ends."""
        self._take_lease()
        try:
            with Messenger(self.broker) as messenger:
                self._messenger = messenger
                time.sleep(_SETTLE_S)
                resend = True
                while not self.stop.is_set():
                    rollout = self._tick(resend=resend)
                    resend = False
                    if rollout.state in FINAL_STATES and rollout.requested is None:
                        return rollout
                    self.stop.wait(self.poll_s)
        finally:
            self._messenger = None
            self.db.release(self.rollout_id, self.owner)
        return self._rollout()

    def _take_lease(self) -> None:
        """Take the lease, waiting up to ``wait_for_lease_s`` for one left by a controller that
        died to run out; LeaseHeld at once when its owner is seen renewing it (it is alive)."""
        deadline = time.monotonic() + self.wait_for_lease_s
        first: RolloutRecord | None = None
        while (held := self.db.acquire(self.rollout_id, self.owner, self.lease_ttl_s)) is not None:
            first = first or held
            renewed = (
                held.owner == first.owner
                and held.lease_expires_at is not None
                and first.lease_expires_at is not None
                and held.lease_expires_at > first.lease_expires_at
            )
            if renewed or time.monotonic() >= deadline or self.stop.is_set():
                until = (
                    held.lease_expires_at.isoformat(timespec="seconds")
                    if held.lease_expires_at
                    else "?"
                )
                raise LeaseHeld(
                    f"rollout {self.rollout_id} is run by another controller ({held.owner}, "
                    f"lease until {until}); it resumes from the database if that one stops"
                )
            self.stop.wait(min(0.5, max(0.1, deadline - time.monotonic())))
        self._renewed = time.monotonic()

    def _rollout(self) -> RolloutRecord:
        rollout = self.db.get(self.rollout_id)
        if rollout is None:
            raise DeployError(f"rollout {self.rollout_id} vanished from {self.db.display_url}")
        return rollout

    def _tick(self, *, resend: bool) -> RolloutRecord:
        if time.monotonic() - self._renewed > self.lease_ttl_s / 3:
            self.db.renew(*self.lease)
            self._renewed = time.monotonic()
        assert self._messenger is not None
        arrived = self._messenger.events()
        for refused in (m for m in arrived if isinstance(m, RejectedMessage)):
            # Said, not stored: a forged or garbled message says nothing about a board.
            self._say(f"ignored a message on {refused.topic}: {refused.reason}")
        mine = [
            e for e in arrived if isinstance(e, DeploymentEvent) and e.rollout_id == self.rollout_id
        ]
        if mine:
            self.db.record_events(self.rollout_id, mine)
        rollout = self._rollout()
        if rollout.requested == "rollback" and rollout.state in (
            RolloutState.RUNNING,
            RolloutState.SUCCEEDED,
        ):
            self.db.set_state(self.lease, RolloutState.ROLLING_BACK, reason="rolled back by hand")
            self._say(f"rollout {self.rollout_id}: rolling back, as asked")
            rollout = self._rollout()
        if rollout.state is RolloutState.RUNNING:
            self._waves(rollout, resend=resend)
        elif rollout.state is RolloutState.ROLLING_BACK:
            self._revert(rollout, resend=resend)
        return self._rollout()

    # -- running ------------------------------------------------------------------------------

    def _waves(self, rollout: RolloutRecord, *, resend: bool) -> None:
        waves = self.db.waves(self.rollout_id)
        wave = next((w for w in waves if w.state is not WaveState.PASSED), None)
        if wave is None:
            self.db.set_state(
                self.lease, RolloutState.SUCCEEDED, reason=f"{len(waves)} wave(s) passed"
            )
            self._say(f"rollout {self.rollout_id}: succeeded, every wave passed its gate")
        elif wave.state is WaveState.PENDING:
            self._send_wave(rollout, wave)
        elif wave.state is WaveState.SENT:
            if resend:
                quiet = [
                    t
                    for t in self.db.targets(self.rollout_id, wave=wave.index)
                    if t.state is TargetState.SENT
                ]
                self._send(rollout, quiet, action=DeployAction.INSTALL)
            self._judge(rollout, wave)

    def _send_wave(self, rollout: RolloutRecord, wave: WaveRecord) -> None:
        targets = self.db.targets(self.rollout_id, wave=wave.index)
        with self.db.reading("reading device statuses") as conn:
            offline = offline_devices(conn, [t.device_id for t in targets])
        # Recorded first: a controller killed after this resends to boards that never answer.
        self.db.mark_wave_sent(self.lease, wave.index, offline)
        self._send(rollout, targets, action=DeployAction.INSTALL)
        later = f" ({len(offline)} offline: they get it when they return)" if offline else ""
        self._say(
            f"rollout {self.rollout_id}: wave {wave.label} sent to {len(targets)} board(s){later}"
        )

    def _judge(self, rollout: RolloutRecord, wave: WaveRecord) -> None:
        gate = rollout.gate
        budget = gate.accuracy_drop_pt if gate.accuracy_drop_pt is not None else 0.0
        targets = self.db.targets(self.rollout_id, wave=wave.index)
        with self.db.reading("reading the boards' reports") as conn:
            boards = evidence(conn, targets, digest=rollout.bundle_digest, windows=gate.windows)
        figures = [judge_board(b, gate, budget_pt=budget) for b in boards]
        sent_at = wave.sent_at or utc_now()
        timed_out = utc_now() - sent_at > timedelta(seconds=gate.timeout_s)
        decided = decide_wave(figures, gate, timed_out=timed_out)
        if decided is None:
            return
        passed, why = decided
        verdict = WaveVerdict(
            wave=wave.index,
            label=wave.label,
            passed=passed,
            reason=why,
            windows=gate.windows,
            p50_ratio_limit=gate.p50_ratio,
            accuracy_budget_pt=budget,
            max_failures=gate.max_failures,
            boards=tuple(figures),
            decided_at=utc_now(),
        )
        self.db.decide_wave(self.lease, verdict)
        self._say(
            f"rollout {self.rollout_id}: wave {wave.label} "
            f"{'passed' if passed else 'FAILED'} its gate: {why}"
        )

    # -- rolling back -------------------------------------------------------------------------

    def _revert(self, rollout: RolloutRecord, *, resend: bool) -> None:
        sent = [t for t in self.db.targets(self.rollout_id) if t.sent_at is not None]
        fresh = [t for t in sent if t.revert_sent_at is None]
        if fresh:
            self.db.mark_reverting(self.lease, [t.device_id for t in fresh])
            self._send(rollout, fresh, action=DeployAction.REVERT)
            self._say(
                f"rollout {self.rollout_id}: sending {len(fresh)} board(s) back to "
                "their previous bundle"
            )
            return
        waiting = [t for t in sent if t.state is TargetState.REVERTING]
        if resend:
            self._send(rollout, waiting, action=DeployAction.REVERT)
        with self.db.reading("reading the boards' reports") as conn:
            back = [
                t.device_id
                for t in waiting
                if t.revert_sent_at is not None
                and reported_since(conn, t.device_id, t.from_digest, t.revert_sent_at)
            ]
        if back:
            self.db.mark_reverted(self.lease, back)
        left = len(waiting) - len(back)
        last = max((t.revert_sent_at for t in sent if t.revert_sent_at), default=utc_now())
        timed_out = utc_now() - last > timedelta(seconds=rollout.gate.timeout_s)
        if left and not timed_out:
            return
        final = RolloutState.ROLLED_BACK if self._ran(rollout, sent) else RolloutState.FAILED
        unconfirmed = f"; {left} board(s) did not report from their previous bundle" if left else ""
        self.db.set_state(self.lease, final, reason=rollout.reason + unconfirmed)
        self._say(
            f"rollout {self.rollout_id}: {final.value.replace('_', ' ')}: "
            f"{rollout.reason}{unconfirmed}"
        )

    def _ran(self, rollout: RolloutRecord, sent: list[TargetRecord]) -> bool:
        """Whether any board ever ran the bundle (activated it or reported from it)."""
        with self.db.reading("reading deployment events") as conn:
            event = conn.execute(
                select(EventRow.id)
                .where(
                    EventRow.rollout_id == self.rollout_id,
                    EventRow.bundle_digest == rollout.bundle_digest,
                    EventRow.phase.in_([p.value for p in _RAN]),
                )
                .limit(1)
            ).first()
            return event is not None or any(
                t.sent_at is not None
                and reported_since(conn, t.device_id, rollout.bundle_digest, t.sent_at)
                for t in sent
            )

    # -- commands -----------------------------------------------------------------------------

    def _send(self, rollout: RolloutRecord, targets: list[TargetRecord], *, action: DeployAction):
        assert self._messenger is not None
        for target in targets:
            self._messenger.send(_command(rollout, target, action))


def _command(rollout: RolloutRecord, target: TargetRecord, action: DeployAction) -> DeployCommand:
    if action is DeployAction.REVERT:
        return DeployCommand(
            rollout_id=rollout.rollout_id,
            device_id=target.device_id,
            action=action,
            bundle_digest=target.from_digest,
            bundle_id=target.from_bundle_id,
            measure_windows=rollout.gate.windows,
            issued_at=utc_now(),
        )
    return DeployCommand(
        rollout_id=rollout.rollout_id,
        device_id=target.device_id,
        action=action,
        bundle_digest=rollout.bundle_digest,
        bundle_id=rollout.bundle_id,
        url=rollout.url,
        archive_sha256=rollout.archive_sha256,
        archive_size=rollout.archive_size,
        signature_required=rollout.signature_required,
        budgets=rollout.budgets,
        measure_windows=rollout.gate.windows,
        issued_at=utc_now(),
    )
