"""Rollouts in the collector's database: created once, then changed only under their lease.

One controller owns a rollout at a time: it holds ``owner`` until ``lease_expires_at`` and
renews it while it runs. Every change a controller makes (a wave sent, a gate decided, a board
sent back) is written in one transaction with a renewal that succeeds only if the lease is
still its own, so a controller that was paused past its lease and lost it to another writes
nothing; it stops with :class:`LeaseLost`. A controller that dies leaves the lease to expire.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from edgekit.collector.engine import Database, open_database
from edgekit.collector.rollout_tables import EventRow, RolloutRow, TargetRow, WaveRow
from edgekit.deploy_wire import DeploymentEvent, DeploymentPhase
from edgekit.errors import DeployError
from edgekit.rollout.evidence import FleetBoard
from edgekit.rollout.gate import WaveVerdict
from edgekit.rollout.plan import Wave
from edgekit.rollout.records import RolloutRecord, TargetRecord, WaveRecord
from edgekit.rollout.states import RolloutState, TargetState, WaveState
from edgekit.schema import utc_now


class LeaseLost(DeployError):
    """Another controller holds the rollout now; this one must stop."""


class RolloutDb:
    """Rollout rows of one database, for controllers and for ``edgekit rollouts``."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self.db: Database = open_database(url, create=True, timeout_s=timeout_s)
        self.display_url = self.db.display_url

    def close(self) -> None:
        """Release the connections."""
        self.db.close()

    def __enter__(self) -> RolloutDb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def reading(self, action: str) -> Iterator[Connection]:
        """A connection for reads, its failures as StoreError naming ``action``."""
        with self.db.guard(action), self.db.engine.connect() as conn:
            yield conn

    @contextmanager
    def _writing(self, action: str, lease: tuple[str, str, float] | None) -> Iterator[Connection]:
        """A transaction; with ``lease`` (rollout id, owner, ttl) renewed in it or LeaseLost."""
        with self.db.guard(action), self.db.engine.begin() as conn:
            if lease is not None:
                _renew(conn, *lease)
            yield conn

    # -- creating and reading -----------------------------------------------------------------

    def create(self, row: dict[str, object], waves: Sequence[Wave], fleet: dict[str, FleetBoard]):
        """Insert a rollout with its waves and targets (all pending)."""
        now = utc_now()
        with self._writing("creating the rollout", None) as conn:
            conn.execute(
                insert(RolloutRow).values(
                    **row,
                    state=RolloutState.RUNNING.value,
                    reason="",
                    created_at=now,
                    updated_at=now,
                )
            )
            for index, wave in enumerate(waves):
                conn.execute(
                    insert(WaveRow).values(
                        rollout_id=row["rollout_id"],
                        wave=index,
                        label=wave.label,
                        size=len(wave.devices),
                        state=WaveState.PENDING.value,
                    )
                )
                for device in wave.devices:
                    board = fleet[device]
                    conn.execute(
                        insert(TargetRow).values(
                            rollout_id=row["rollout_id"],
                            device_id=device,
                            wave=index,
                            from_digest=board.bundle_digest,
                            from_bundle_id=board.bundle_id,
                            state=TargetState.PENDING.value,
                            reason="",
                            deferred=False,
                            updated_at=now,
                        )
                    )

    def get(self, rollout_id: str) -> RolloutRecord | None:
        """The rollout, or None."""
        with self.reading("reading a rollout") as conn:
            row = conn.execute(
                select(RolloutRow.__table__).where(RolloutRow.rollout_id == rollout_id)
            ).first()
        return None if row is None else RolloutRecord.of(row)

    def waves(self, rollout_id: str) -> list[WaveRecord]:
        """The rollout's waves in order."""
        with self.reading("reading waves") as conn:
            rows = conn.execute(
                select(WaveRow.__table__)
                .where(WaveRow.rollout_id == rollout_id)
                .order_by(WaveRow.wave)
            )
            return [WaveRecord.of(r) for r in rows]

    def targets(self, rollout_id: str, *, wave: int | None = None) -> list[TargetRecord]:
        """The rollout's boards (of one wave), by device id."""
        query = select(TargetRow.__table__).where(TargetRow.rollout_id == rollout_id)
        if wave is not None:
            query = query.where(TargetRow.wave == wave)
        with self.reading("reading targets") as conn:
            return [TargetRecord.of(r) for r in conn.execute(query.order_by(TargetRow.device_id))]

    # -- the lease ------------------------------------------------------------------------------

    def acquire(self, rollout_id: str, owner: str, ttl_s: float) -> RolloutRecord | None:
        """Take the lease if it is free, expired or already ours: None then, else the rollout
        as it stands (its owner and until when)."""
        now = utc_now()
        with self._writing("taking the rollout's lease", None) as conn:
            taken = conn.execute(
                update(RolloutRow)
                .where(RolloutRow.rollout_id == rollout_id)
                .where(
                    (RolloutRow.owner.is_(None))
                    | (RolloutRow.owner == owner)
                    | (RolloutRow.lease_expires_at < now)
                )
                .values(owner=owner, lease_expires_at=now + dt.timedelta(seconds=ttl_s))
            ).rowcount
        return None if taken == 1 else self.get(rollout_id)

    def renew(self, rollout_id: str, owner: str, ttl_s: float) -> None:
        """Extend our lease; LeaseLost if it is not ours any more."""
        with self._writing("renewing the rollout's lease", (rollout_id, owner, ttl_s)):
            pass

    def release(self, rollout_id: str, owner: str) -> None:
        """Give the lease up (when the controller ends)."""
        with self._writing("releasing the rollout's lease", None) as conn:
            conn.execute(
                update(RolloutRow)
                .where(RolloutRow.rollout_id == rollout_id, RolloutRow.owner == owner)
                .values(owner=None, lease_expires_at=None)
            )

    # -- changes under the lease --------------------------------------------------------------

    def mark_wave_sent(
        self, lease: tuple[str, str, float], wave: int, offline: set[str]
    ) -> datetime:
        """Record wave ``wave`` as sent (its boards offline now deferred); when."""
        rollout_id, now = lease[0], utc_now()
        with self._writing("recording a wave as sent", lease) as conn:
            conn.execute(
                update(WaveRow)
                .where(WaveRow.rollout_id == rollout_id, WaveRow.wave == wave)
                .values(state=WaveState.SENT.value, sent_at=now)
            )
            for deferred in (False, True):
                query = update(TargetRow).where(
                    TargetRow.rollout_id == rollout_id, TargetRow.wave == wave
                )
                query = query.where(
                    TargetRow.device_id.in_(offline)
                    if deferred
                    else TargetRow.device_id.not_in(offline)
                )
                conn.execute(
                    query.values(
                        state=TargetState.SENT.value, sent_at=now, deferred=deferred, updated_at=now
                    )
                )
        return now

    def decide_wave(self, lease: tuple[str, str, float], verdict: WaveVerdict) -> None:
        """Store a wave's gate figures and outcome; a failed wave starts the rollback."""
        rollout_id = lease[0]
        with self._writing("recording a gate", lease) as conn:
            state = WaveState.PASSED if verdict.passed else WaveState.FAILED
            conn.execute(
                update(WaveRow)
                .where(WaveRow.rollout_id == rollout_id, WaveRow.wave == verdict.wave)
                .values(
                    state=state.value,
                    decided_at=verdict.decided_at,
                    verdict_json=verdict.model_dump_json(),
                )
            )
            if not verdict.passed:
                _set_state(
                    conn,
                    rollout_id,
                    RolloutState.ROLLING_BACK,
                    f"wave {verdict.label}: {verdict.reason}",
                )

    def mark_reverting(self, lease: tuple[str, str, float], devices: Sequence[str]) -> datetime:
        """Record boards as sent back to their previous bundle; when."""
        now = utc_now()
        with self._writing("recording boards sent back", lease) as conn:
            conn.execute(
                update(TargetRow)
                .where(TargetRow.rollout_id == lease[0], TargetRow.device_id.in_(list(devices)))
                .values(state=TargetState.REVERTING.value, revert_sent_at=now, updated_at=now)
            )
        return now

    def mark_reverted(self, lease: tuple[str, str, float], devices: Sequence[str]) -> None:
        """Record boards as reporting from their previous bundle again."""
        with self._writing("recording boards back", lease) as conn:
            conn.execute(
                update(TargetRow)
                .where(TargetRow.rollout_id == lease[0], TargetRow.device_id.in_(list(devices)))
                .values(state=TargetState.REVERTED.value, updated_at=utc_now())
            )

    def set_state(
        self, lease: tuple[str, str, float], state: RolloutState, *, reason: str | None = None
    ) -> None:
        """Move the rollout to ``state`` (final states record when)."""
        with self._writing("changing the rollout's state", lease) as conn:
            _set_state(conn, lease[0], state, reason)

    def request_rollback(self, rollout_id: str) -> None:
        """Ask whoever runs the rollout to roll it back (any process may ask)."""
        with self._writing("asking for a rollback", None) as conn:
            conn.execute(
                update(RolloutRow)
                .where(RolloutRow.rollout_id == rollout_id)
                .values(requested="rollback", updated_at=utc_now())
            )

    def record_events(self, rollout_id: str, events: Sequence[DeploymentEvent]) -> int:
        """Store the events of this rollout's boards (repeats dropped) and move each board to
        the phase its latest event reports; how many were new."""
        new = 0
        now = utc_now()
        for event in events:
            try:
                with self._writing("storing a deployment event", None) as conn:
                    conn.execute(
                        insert(EventRow).values(
                            message_id=event.message_id,
                            rollout_id=event.rollout_id,
                            device_id=event.device_id,
                            bundle_digest=event.bundle_digest,
                            phase=event.phase.value,
                            percent=event.percent,
                            reason=event.reason,
                            at=event.at,
                            received_at=now,
                        )
                    )
                    _follow(conn, rollout_id, event, now)
                new += 1
            except IntegrityError:
                continue  # delivered twice (QoS 1): already stored
        return new


def _renew(conn: Connection, rollout_id: str, owner: str, ttl_s: float) -> None:
    now = utc_now()
    renewed = conn.execute(
        update(RolloutRow)
        .where(
            RolloutRow.rollout_id == rollout_id,
            RolloutRow.owner == owner,
            RolloutRow.lease_expires_at > now,
        )
        .values(lease_expires_at=now + dt.timedelta(seconds=ttl_s), updated_at=now)
    ).rowcount
    if renewed != 1:
        raise LeaseLost(f"the lease on rollout {rollout_id} is no longer held by {owner}")


def _set_state(conn: Connection, rollout_id: str, state: RolloutState, reason: str | None) -> None:
    values: dict[str, object] = {"state": state.value, "updated_at": utc_now()}
    if reason is not None:
        values["reason"] = reason[:1000]
    if state in (RolloutState.SUCCEEDED, RolloutState.ROLLED_BACK, RolloutState.FAILED):
        values["finished_at"] = utc_now()
        values["requested"] = None
    conn.execute(update(RolloutRow).where(RolloutRow.rollout_id == rollout_id).values(**values))


# The phases that move a board forward; earlier ones arriving late must not move it back.
_ORDER = [p.value for p in DeploymentPhase]


def _follow(conn: Connection, rollout_id: str, event: DeploymentEvent, now: datetime) -> None:
    if event.rollout_id != rollout_id:
        return
    row = conn.execute(
        select(TargetRow.state, TargetRow.from_digest).where(
            TargetRow.rollout_id == rollout_id, TargetRow.device_id == event.device_id
        )
    ).first()
    if row is None or row.state in (TargetState.REVERTING.value, TargetState.REVERTED.value):
        return  # not a board of this rollout, or one being sent back (its reports tell)
    if row.state in _ORDER and _ORDER.index(row.state) > _ORDER.index(event.phase.value):
        return
    conn.execute(
        update(TargetRow)
        .where(TargetRow.rollout_id == rollout_id, TargetRow.device_id == event.device_id)
        .values(
            state=event.phase.value,
            phase=event.phase.value,
            reason=event.reason[:1000],
            updated_at=now,
        )
    )
