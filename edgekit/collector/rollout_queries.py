"""What the fleet report and ``edgekit rollouts`` read about deployments: which board runs which
bundle since when, and each rollout's timeline with every wave's gate figures.

Plain functions over a connection returning frozen values; a database without the (optional)
rollout tables has no rollouts, and its boards are listed without one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, inspect, select

from edgekit.collector.rollout_tables import EventRow, RolloutRow, TargetRow, WaveRow
from edgekit.collector.tables import ReportRow, as_utc
from edgekit.rollout.gate import BoardFigures, WaveVerdict


@dataclass(frozen=True, slots=True)
class DeviceBundle:
    """The bundle a board runs (that of its latest report), since when, and the rollout that
    sent it there (None: installed by hand, or before any rollout)."""

    device_id: str
    bundle_id: str
    bundle_digest: str
    profile: str
    since: datetime  # its first report on this bundle after reporting from another
    last_report_at: datetime
    rollout_id: str | None


@dataclass(frozen=True, slots=True)
class WaveView:
    """One wave: when it was sent and decided, and its gate (None until decided)."""

    index: int
    label: str
    size: int
    state: str
    sent_at: datetime | None
    decided_at: datetime | None
    verdict: WaveVerdict | None

    @property
    def boards(self) -> tuple[BoardFigures, ...]:
        """Each board's gate figures (p50 new/previous and ratio, accuracies, verdict)."""
        return self.verdict.boards if self.verdict is not None else ()


@dataclass(frozen=True, slots=True)
class RolloutView:
    """One rollout with its waves in order and how its boards ended up."""

    rollout_id: str
    bundle_id: str
    bundle_digest: str
    profile: str
    selector: str
    state: str
    reason: str
    created_at: datetime
    finished_at: datetime | None
    target_states: dict[str, int]  # target state -> boards
    events: int  # deployment events the boards sent
    waves: tuple[WaveView, ...]

    @property
    def targets(self) -> int:
        """Boards the rollout is for."""
        return sum(self.target_states.values())


def has_rollouts(conn: Connection) -> bool:
    """Whether the database has the rollout tables."""
    return inspect(conn).has_table(RolloutRow.__tablename__)


def device_bundles(conn: Connection) -> list[DeviceBundle]:
    """Every board that reported, with the bundle it runs now, by device id."""
    latest = select(func.max(ReportRow.id).label("id")).group_by(ReportRow.device_id).subquery()
    rows = conn.execute(
        select(
            ReportRow.id,
            ReportRow.device_id,
            ReportRow.bundle_id,
            ReportRow.bundle_digest,
            ReportRow.profile,
            ReportRow.received_at,
        )
        .join(latest, latest.c.id == ReportRow.id)
        .order_by(ReportRow.device_id)
    ).all()
    sent_by = _sent_by(conn) if has_rollouts(conn) else {}
    found = []
    for r in rows:
        other = conn.execute(
            select(func.max(ReportRow.id)).where(
                ReportRow.device_id == r.device_id, ReportRow.bundle_digest != r.bundle_digest
            )
        ).scalar()
        since = conn.execute(
            select(func.min(ReportRow.received_at)).where(
                ReportRow.device_id == r.device_id,
                ReportRow.bundle_digest == r.bundle_digest,
                ReportRow.id > (other or 0),
            )
        ).scalar()
        found.append(
            DeviceBundle(
                device_id=r.device_id,
                bundle_id=r.bundle_id,
                bundle_digest=r.bundle_digest,
                profile=r.profile,
                since=as_utc(since or r.received_at),
                last_report_at=as_utc(r.received_at),
                rollout_id=sent_by.get((r.device_id, r.bundle_digest)),
            )
        )
    return found


def _sent_by(conn: Connection) -> dict[tuple[str, str], str]:
    """(device, bundle digest) -> the latest rollout that sent that bundle to that board."""
    rows = conn.execute(
        select(TargetRow.device_id, RolloutRow.bundle_digest, RolloutRow.rollout_id)
        .join(RolloutRow, RolloutRow.rollout_id == TargetRow.rollout_id)
        .where(TargetRow.sent_at.is_not(None))
        .order_by(RolloutRow.created_at)
    )
    return {(r.device_id, r.bundle_digest): r.rollout_id for r in rows}


def rollout_timeline(conn: Connection, *, limit: int = 20) -> list[RolloutView]:
    """The latest ``limit`` rollouts, newest first, each with its waves and gate figures."""
    if not has_rollouts(conn):
        return []
    rollouts = conn.execute(
        select(RolloutRow.__table__).order_by(RolloutRow.created_at.desc()).limit(limit)
    ).all()
    views = []
    for r in rollouts:
        waves = conn.execute(
            select(WaveRow.__table__)
            .where(WaveRow.rollout_id == r.rollout_id)
            .order_by(WaveRow.wave)
        ).all()
        states = Counter(
            conn.execute(
                select(TargetRow.state).where(TargetRow.rollout_id == r.rollout_id)
            ).scalars()
        )
        events = conn.execute(
            select(func.count(EventRow.id)).where(EventRow.rollout_id == r.rollout_id)
        ).scalar_one()
        views.append(
            RolloutView(
                rollout_id=r.rollout_id,
                bundle_id=r.bundle_id,
                bundle_digest=r.bundle_digest,
                profile=r.profile,
                selector=r.selector,
                state=r.state,
                reason=r.reason or "",
                created_at=as_utc(r.created_at),
                finished_at=as_utc(r.finished_at) if r.finished_at else None,
                target_states=dict(sorted(states.items())),
                events=int(events),
                waves=tuple(_wave(w) for w in waves),
            )
        )
    return views


def _wave(row: Any) -> WaveView:
    return WaveView(
        index=row.wave,
        label=row.label,
        size=row.size,
        state=row.state,
        sent_at=as_utc(row.sent_at) if row.sent_at else None,
        decided_at=as_utc(row.decided_at) if row.decided_at else None,
        verdict=WaveVerdict.model_validate_json(row.verdict_json) if row.verdict_json else None,
    )
