"""What the collector's database says about the boards: which bundle each runs, and the windows
the gate judges (reports on the new bundle since it was sent, on the previous one before)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from edgekit.collector.tables import Bundle, Device, ReportRow
from edgekit.rollout.gate import BoardEvidence, Window
from edgekit.rollout.records import TargetRecord
from edgekit.rollout.states import TargetState
from edgekit.vocab import DeviceStatus


@dataclass(frozen=True, slots=True)
class FleetBoard:
    """A board as its latest report and status describe it."""

    device_id: str
    bundle_digest: str
    bundle_id: str
    profile: str
    offline: bool


def fleet(conn: Connection) -> list[FleetBoard]:
    """Every board that has reported, with the bundle of its latest report."""
    latest = select(func.max(ReportRow.id).label("id")).group_by(ReportRow.device_id).subquery()
    rows = conn.execute(
        select(ReportRow.device_id, ReportRow.bundle_digest, ReportRow.bundle_id,
               ReportRow.profile, Device.last_status)
        .join(latest, latest.c.id == ReportRow.id)
        .join(Device, Device.device_id == ReportRow.device_id)
        .order_by(ReportRow.device_id)
    )  # fmt: skip
    return [
        FleetBoard(
            r.device_id,
            r.bundle_digest,
            r.bundle_id,
            r.profile,
            r.last_status == DeviceStatus.OFFLINE.value,
        )
        for r in rows
    ]


def offline_devices(conn: Connection, devices: Iterable[str]) -> set[str]:
    """Those of ``devices`` whose last status the collector saw is ``offline``."""
    wanted = list(devices)
    rows = conn.execute(
        select(Device.device_id).where(
            Device.device_id.in_(wanted), Device.last_status == DeviceStatus.OFFLINE.value
        )
    )
    return {r.device_id for r in rows}


def evidence(
    conn: Connection, targets: Sequence[TargetRecord], *, digest: str, windows: int
) -> list[BoardEvidence]:
    """The gate's evidence for ``targets`` (sent) of a rollout of bundle ``digest``."""
    build = conn.execute(
        select(Bundle.quantized, Bundle.metric).where(Bundle.bundle_digest == digest)
    ).first()
    found = []
    for target in targets:
        if target.sent_at is None:
            continue
        new = _windows(conn, target.device_id, digest, since=target.sent_at, limit=windows)
        previous = _windows(conn, target.device_id, target.from_digest, before=target.sent_at,
                            limit=windows)  # fmt: skip
        failed = target.state in (TargetState.FAILED, TargetState.ROLLED_BACK)
        why = f"{target.state.replace('_', ' ')}: {target.reason}" if failed else None
        found.append(BoardEvidence(
            device_id=target.device_id, deferred=target.deferred, failure=why, new=new,
            previous=previous, build_accuracy=build.quantized if build else None,
            build_metric=build.metric if build else None,
        ))  # fmt: skip
    return found


def reported_since(conn: Connection, device_id: str, digest: str, since: datetime) -> bool:
    """Whether a report of ``device_id`` running ``digest`` arrived at ``since`` or later."""
    row = conn.execute(
        select(ReportRow.id)
        .where(
            ReportRow.device_id == device_id,
            ReportRow.bundle_digest == digest,
            ReportRow.received_at >= since,
        )
        .limit(1)
    ).first()
    return row is not None


def _windows(
    conn: Connection,
    device_id: str,
    digest: str,
    *,
    limit: int,
    since: datetime | None = None,
    before: datetime | None = None,
) -> list[Window]:
    query = select(ReportRow.p50_ms, ReportRow.accuracy_value, ReportRow.accuracy_metric).where(
        ReportRow.device_id == device_id, ReportRow.bundle_digest == digest
    )
    if since is not None:
        query = query.where(ReportRow.received_at >= since).order_by(ReportRow.id)
    if before is not None:
        query = query.where(ReportRow.received_at < before).order_by(ReportRow.id.desc())
    return [
        Window(r.p50_ms, r.accuracy_value, r.accuracy_metric)
        for r in conn.execute(query.limit(limit))
    ]
