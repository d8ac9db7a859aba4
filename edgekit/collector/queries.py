"""What is read back from the store: stored message ids, and the fleet report's snapshot.

The report's figures are aggregated in SQL (per device, per bundle, per device and bundle), so a
snapshot costs the same whether the fleet sent a thousand reports or ten million.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Connection, Select, Table, distinct, func, select

from edgekit.collector.snapshot import (
    BundleRow,
    DeviceBundleRow,
    DeviceRow,
    FleetSnapshot,
    RejectedEntry,
)
from edgekit.collector.tables import Bundle, Device, RejectedRow, ReportRow, StatusRow, as_utc
from edgekit.schema import utc_now

# Bound parameters per IN (...) list; far below SQLite's and PostgreSQL's limits.
_IN_CHUNK = 500

_devices: Table = Device.__table__  # type: ignore[assignment]
_bundles: Table = Bundle.__table__  # type: ignore[assignment]
_reports: Table = ReportRow.__table__  # type: ignore[assignment]
_statuses: Table = StatusRow.__table__  # type: ignore[assignment]
_rejected: Table = RejectedRow.__table__  # type: ignore[assignment]


def chunks(values: list[Any]) -> Iterator[list[Any]]:
    """``values`` in slices short enough for one ``IN (...)`` list."""
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def existing_keys(conn: Connection, table: Table, key: str, values: Iterable[Any]) -> set[Any]:
    """Which of ``values`` the ``key`` column of ``table`` holds."""
    column = table.c[key]
    found: set[Any] = set()
    for chunk in chunks(list(values)):
        found.update(conn.scalars(select(column).where(column.in_(chunk))))
    return found


def message_ids(conn: Connection, candidates: Iterable[str] | None) -> set[str]:
    """The stored report message ids (only those among ``candidates`` when given)."""
    if candidates is None:
        return set(conn.scalars(select(_reports.c.message_id)))
    return existing_keys(conn, _reports, "message_id", candidates)


def last_statuses(conn: Connection, device_ids: list[str]) -> dict[str, str | None]:
    """The last recorded status of each of ``device_ids`` that is stored."""
    current: dict[str, str | None] = {}
    for chunk in chunks(device_ids):
        rows = conn.execute(
            select(_devices.c.device_id, _devices.c.last_status).where(
                _devices.c.device_id.in_(chunk)
            )
        )
        current.update({row.device_id: row.last_status for row in rows})
    return current


def snapshot(conn: Connection, *, rejected_limit: int) -> FleetSnapshot:
    """Everything the fleet report shows, read on ``conn``."""
    return FleetSnapshot(
        taken_at=utc_now(),
        devices=tuple(_device_rows(conn)),
        bundles=tuple(_bundle_rows(conn)),
        device_bundles=tuple(_device_bundle_rows(conn)),
        report_count=_count(conn, _reports),
        status_count=_count(conn, _statuses),
        rejected_count=_count(conn, _rejected),
        recent_rejected=tuple(
            RejectedEntry(r.topic, r.reason, r.payload_bytes, as_utc(r.received_at))
            for r in conn.execute(
                select(_rejected).order_by(_rejected.c.id.desc()).limit(rejected_limit)
            )
        ),
    )


def _count(conn: Connection, table: Table) -> int:
    return conn.scalar(select(func.count()).select_from(table)) or 0


def _device_rows(conn: Connection) -> Iterator[DeviceRow]:
    per_device = (
        select(
            _reports.c.device_id,
            func.count().label("reports"),
            func.count(distinct(_reports.c.bundle_digest)).label("bundles"),
        )
        .group_by(_reports.c.device_id)
        .subquery()
    )
    query = (
        select(_devices, per_device.c.reports, per_device.c.bundles)
        .outerjoin(per_device, per_device.c.device_id == _devices.c.device_id)
        .order_by(_devices.c.device_id)
    )
    for row in conn.execute(query):
        yield DeviceRow(
            device_id=row.device_id,
            hostname=row.hostname,
            machine=row.machine,
            system=row.system,
            reports=row.reports or 0,
            bundles=row.bundles or 0,
            first_seen=as_utc(row.first_seen),
            last_seen=as_utc(row.last_seen),
            last_status=row.last_status,
            status_at=as_utc(row.status_at) if row.status_at else None,
        )


def _bundle_rows(conn: Connection) -> Iterator[BundleRow]:
    per_bundle = (
        select(
            _reports.c.bundle_digest,
            func.count().label("reports"),
            func.count(distinct(_reports.c.device_id)).label("devices"),
        )
        .group_by(_reports.c.bundle_digest)
        .subquery()
    )
    query = (
        select(_bundles, per_bundle.c.reports, per_bundle.c.devices)
        .outerjoin(per_bundle, per_bundle.c.bundle_digest == _bundles.c.bundle_digest)
        .order_by(_bundles.c.profile, _bundles.c.bundle_id, _bundles.c.bundle_digest)
    )
    for row in conn.execute(query):
        yield BundleRow(
            bundle_digest=row.bundle_digest,
            bundle_id=row.bundle_id,
            profile=row.profile,
            artifact=row.artifact,
            format=row.format,
            model_bytes=row.model_bytes,
            est_latency_ms=row.est_latency_ms,
            metric=row.metric,
            fp32=row.fp32,
            quantized=row.quantized,
            devices=row.devices or 0,
            reports=row.reports or 0,
        )


def _device_bundle_query() -> Select[Any]:
    r, b = _reports.c, _bundles.c
    samples = func.sum(r.accuracy_samples)
    # Grouped by the bundle's own figures too: they are one value per digest, and PostgreSQL
    # selects only what is grouped or aggregated.
    group = (
        r.device_id,
        r.bundle_digest,
        b.bundle_id,
        b.profile,
        b.est_latency_ms,
        b.model_bytes,
        b.metric,
        b.fp32,
        b.quantized,
    )
    return (
        select(
            *group,
            func.max(r.backend).label("backend"),
            func.count().label("reports"),
            func.max(r.received_at).label("last_received_at"),
            func.avg(r.mean_ms).label("mean_ms"),
            func.avg(r.p50_ms).label("p50_ms"),
            func.avg(r.p90_ms).label("p90_ms"),
            func.avg(r.p99_ms).label("p99_ms"),
            func.max(r.p99_ms).label("max_p99_ms"),
            func.max(r.peak_rss_mb).label("peak_rss_mb"),
            func.max(r.accuracy_metric).label("accuracy_metric"),
            # Windows weigh by how many samples they scored.
            (func.sum(r.accuracy_value * r.accuracy_samples) / func.nullif(samples, 0)).label(
                "accuracy"
            ),
            samples.label("accuracy_samples"),
        )
        .join(_bundles, b.bundle_digest == r.bundle_digest)
        .group_by(*group)
        .order_by(r.device_id, b.profile, b.bundle_id)
    )


def _device_bundle_rows(conn: Connection) -> Iterator[DeviceBundleRow]:
    for row in conn.execute(_device_bundle_query()):
        yield DeviceBundleRow(
            device_id=row.device_id,
            bundle_digest=row.bundle_digest,
            bundle_id=row.bundle_id,
            profile=row.profile,
            backend=row.backend,
            reports=row.reports,
            last_received_at=as_utc(row.last_received_at),
            mean_ms=float(row.mean_ms),
            p50_ms=float(row.p50_ms),
            p90_ms=float(row.p90_ms),
            p99_ms=float(row.p99_ms),
            max_p99_ms=float(row.max_p99_ms),
            peak_rss_mb=float(row.peak_rss_mb),
            accuracy_metric=row.accuracy_metric,
            accuracy=None if row.accuracy is None else float(row.accuracy),
            accuracy_samples=None if row.accuracy_samples is None else int(row.accuracy_samples),
            est_latency_ms=row.est_latency_ms,
            model_bytes=row.model_bytes,
            build_metric=row.metric,
            build_fp32=row.fp32,
            build_quantized=row.quantized,
        )
