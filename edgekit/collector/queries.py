"""What is read back from the store: stored message ids, the fleet report's snapshot, report rows.

The report's figures are aggregated in SQL into cells (per device, bundle and time bucket; see
``snapshot``), so a snapshot costs about the same whether the fleet sent a thousand reports or a
million: one pass over the reports (an index range with ``--device``), one over the drift
windows, and look-ups by key for the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    case,
    func,
    inspect,
    select,
)

from edgekit.collector import drift_store as ds
from edgekit.collector.cell_queries import all_cells, conditions, time_axis
from edgekit.collector.drift_queries import drift_cells, drift_references, eval_drift
from edgekit.collector.rollout_queries import RolloutView, rollout_timeline
from edgekit.collector.snapshot import (
    BoardSelection,
    BundleRow,
    Cell,
    DeviceRow,
    FleetSnapshot,
    LatestReport,
    RejectedEntry,
    ReportFilter,
)
from edgekit.collector.tables import (
    Bundle,
    BundleBuild,
    Device,
    RejectedRow,
    ReportRow,
    StatusRow,
    as_utc,
)
from edgekit.schema import Selection, utc_now

# Bound parameters per IN (...) list; far below SQLite's and PostgreSQL's limits.
_IN_CHUNK = 500
# Time buckets of the report's trends: enough to see a change, few enough to stay small.
DEFAULT_BUCKETS = 48
# Sort and hash memory of the report's read on PostgreSQL (per sort, for this transaction only).
_PG_WORK_MEM = "256MB"
# Rollouts the report shows, newest first.
_ROLLOUTS = 20

_devices: Table = Device.__table__  # type: ignore[assignment]
_bundles: Table = Bundle.__table__  # type: ignore[assignment]
_builds: Table = BundleBuild.__table__  # type: ignore[assignment]
_reports: Table = ReportRow.__table__  # type: ignore[assignment]
_statuses: Table = StatusRow.__table__  # type: ignore[assignment]
_rejected: Table = RejectedRow.__table__  # type: ignore[assignment]

# Per-report columns of ``--rows`` exports: every stored figure but the raw payload.
ROW_COLUMNS: tuple[str, ...] = tuple(c.name for c in _reports.columns if c.name != "raw_json")


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


def device_ids(conn: Connection) -> list[str]:
    """Every stored device id, sorted."""
    return list(conn.scalars(select(_devices.c.device_id).order_by(_devices.c.device_id)))


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


def snapshot(
    conn: Connection,
    *,
    rejected_limit: int,
    filters: ReportFilter | None = None,
    buckets: int = DEFAULT_BUCKETS,
    connect: Callable[[], AbstractContextManager[Connection]] | None = None,
) -> FleetSnapshot:
    """Everything the fleet report shows about the reports ``filters`` select, read on ``conn``
    (and, on SQLite, a second connection from ``connect`` to share the work)."""
    filters = filters or ReportFilter()
    _tune_reader(conn)
    axis = time_axis(conn, filters, buckets)
    cells = all_cells(conn, filters, axis, connect) if axis is not None else ()
    digests = sorted({c.bundle_digest for c in cells})
    latest, selections = _latest(conn, cells)
    has_drift = inspect(conn).has_table(ds.drift_windows.name)
    return FleetSnapshot(
        taken_at=utc_now(),
        filters=filters,
        axis=axis,
        cells=cells,
        devices=tuple(_device_rows(conn, filters, cells)),
        bundles=tuple(_bundle_rows(conn, filters, cells)),
        report_count=sum(c.windows for c in cells),
        status_count=_count(conn, _statuses),
        rejected_count=_count(conn, _rejected),
        recent_rejected=tuple(
            RejectedEntry(r.topic, r.reason, r.payload_bytes, as_utc(r.received_at))
            for r in conn.execute(
                select(_rejected).order_by(_rejected.c.id.desc()).limit(rejected_limit)
            )
        ),
        drift_cells=(
            (
                *drift_cells(conn, filters, axis, digests),
                *eval_drift(conn, filters, axis, digests),
            )
            if has_drift and axis
            else ()
        ),
        drift_references=tuple(drift_references(conn, digests)) if has_drift else (),
        latest=tuple(latest),
        selections=tuple(selections),
        rollouts=_rollouts(conn),
    )


def _tune_reader(conn: Connection) -> None:
    """Settings for this read's transaction: on PostgreSQL no JIT (compiling the aggregate
    takes longer than running it, ~2 s of 3 on a million reports) and memory enough to sort
    or hash the cells without spilling to disk."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL jit = off")
        conn.exec_driver_sql(f"SET LOCAL work_mem = '{_PG_WORK_MEM}'")


def report_rows(conn: Connection, filters: ReportFilter) -> Iterator[tuple[Any, ...]]:
    """Every report ``filters`` select, one tuple of ``ROW_COLUMNS`` each, streamed in id order."""
    query = (
        select(*(_reports.c[name] for name in ROW_COLUMNS))
        .where(*conditions(filters, _reports))
        .order_by(_reports.c.id)
    )
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
    for row in result:
        yield tuple(row)


# -- devices and bundles ---------------------------------------------------------------------


def _device_rows(
    conn: Connection, filters: ReportFilter, cells: tuple[Cell, ...]
) -> Iterator[DeviceRow]:
    reports: dict[str, int] = {}
    bundles: dict[str, set[str]] = {}
    for cell in cells:
        reports[cell.device_id] = reports.get(cell.device_id, 0) + cell.windows
        bundles.setdefault(cell.device_id, set()).add(cell.bundle_digest)
    query = select(_devices).order_by(_devices.c.device_id)
    if filters.device is not None:
        query = query.where(_devices.c.device_id == filters.device)
    for row in conn.execute(query):
        # Filtered by profile or time, a device without reports in them is not in the report.
        if filters.active and row.device_id not in reports:
            continue
        yield DeviceRow(
            device_id=row.device_id,
            hostname=row.hostname,
            machine=row.machine,
            system=row.system,
            reports=reports.get(row.device_id, 0),
            bundles=len(bundles.get(row.device_id, ())),
            first_seen=as_utc(row.first_seen),
            last_seen=as_utc(row.last_seen),
            last_status=row.last_status,
            status_at=as_utc(row.status_at) if row.status_at else None,
        )


def _bundle_rows(
    conn: Connection, filters: ReportFilter, cells: tuple[Cell, ...]
) -> Iterator[BundleRow]:
    reports: dict[str, int] = {}
    devices: dict[str, set[str]] = {}
    for cell in cells:
        reports[cell.bundle_digest] = reports.get(cell.bundle_digest, 0) + cell.windows
        devices.setdefault(cell.bundle_digest, set()).add(cell.device_id)
    query = select(_bundles).order_by(
        _bundles.c.profile, _bundles.c.bundle_id, _bundles.c.bundle_digest
    )
    # A database made before bundle_builds has none of its figures: they read as None.
    if inspect(conn).has_table(_builds.name):
        extra = [c for c in _builds.c if c.name != "bundle_digest"]
        query = query.add_columns(*extra).outerjoin(
            _builds, _builds.c.bundle_digest == _bundles.c.bundle_digest
        )
    for row in conn.execute(query):
        if filters.active and row.bundle_digest not in reports:
            continue
        build = row._mapping
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
            devices=len(devices.get(row.bundle_digest, ())),
            reports=reports.get(row.bundle_digest, 0),
            first_seen=as_utc(row.first_seen),
            samples=build.get("samples"),
            variant=build.get("variant"),
            host_p50_ms=build.get("host_p50_ms"),
            host_p50_fp32_ms=build.get("host_p50_fp32_ms"),
        )


def _count(conn: Connection, table: Table) -> int:
    return conn.scalar(select(func.count()).select_from(table)) or 0


# -- candidates chosen on boards, rollouts ---------------------------------------------------


def _latest(
    conn: Connection, cells: tuple[Cell, ...]
) -> tuple[list[LatestReport], list[BoardSelection]]:
    """Each device and bundle's latest report: when it arrived, its backend and metric, and
    the board's selection when it made one (read by id: a few thousand rows at most)."""
    latest: dict[tuple[str, str], int] = {}
    for c in cells:
        key = (c.device_id, c.bundle_digest)
        latest[key] = max(latest.get(key, -1), c.last_id)
    r = _reports.c
    has_selection = r.raw_json.like('%"selection":{%')
    reports: list[LatestReport] = []
    selections: list[BoardSelection] = []
    for chunk in chunks(sorted(latest.values())):
        query = select(
            r.device_id, r.bundle_digest, r.received_at, r.backend, r.accuracy_metric,
            case((has_selection, r.raw_json), else_=None),
        ).where(r.id.in_(chunk))  # fmt: skip
        for device, digest, received, backend, metric, raw in conn.execute(query):
            reports.append(LatestReport(device, digest, as_utc(received), backend, metric))
            data = json.loads(raw).get("selection") if raw else None
            if data:
                selections.append(BoardSelection(device, digest, Selection.model_validate(data)))
    reports.sort(key=lambda x: (x.device_id, x.bundle_digest))
    selections.sort(key=lambda x: (x.device_id, x.bundle_digest))
    return reports, selections


def _rollouts(conn: Connection) -> tuple[RolloutView, ...]:
    """The latest rollouts with their waves and gate figures (none without rollout tables)."""
    return tuple(rollout_timeline(conn, limit=_ROLLOUTS))
