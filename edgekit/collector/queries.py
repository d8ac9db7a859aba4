"""What is read back from the store: stored message ids, the fleet report's snapshot, report rows.

The report's figures are aggregated in SQL into cells (per device, bundle and time bucket; see
``snapshot``), so a snapshot costs about the same whether the fleet sent a thousand reports or a
million: one pass over the reports (an index range with ``--device``), one over the drift
windows, and look-ups by key for the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Integer,
    Table,
    case,
    cast,
    func,
    inspect,
    literal,
    literal_column,
    select,
)

from edgekit.collector import drift_store as ds
from edgekit.collector.rollout_queries import RolloutView, rollout_timeline
from edgekit.collector.snapshot import (
    BoardSelection,
    BundleRow,
    Cell,
    DeviceRow,
    DriftCell,
    DriftCounts,
    DriftReference,
    FleetSnapshot,
    LatestReport,
    RejectedEntry,
    ReportFilter,
    TimeAxis,
)
from edgekit.collector.tables import Bundle, Device, RejectedRow, ReportRow, StatusRow, as_utc
from edgekit.schema import Selection, utc_now

# Bound parameters per IN (...) list; far below SQLite's and PostgreSQL's limits.
_IN_CHUNK = 500
# Time buckets of the report's trends: enough to see a change, few enough to stay small.
DEFAULT_BUCKETS = 48
# The Julian day of 1970-01-01 00:00 UTC: SQLite's julianday() of the Unix epoch.
_JULIAN_EPOCH = 2440587.5
# Fleets of at least this many boards are read in two halves of boards at once on SQLite
# (smaller fleets, and one board, in two halves of time).
_PARALLEL_DEVICES = 64
# Sort and hash memory of the report's read on PostgreSQL (per sort, for this transaction only).
_PG_WORK_MEM = "256MB"
# Rollouts the report shows, newest first.
_ROLLOUTS = 20

_devices: Table = Device.__table__  # type: ignore[assignment]
_bundles: Table = Bundle.__table__  # type: ignore[assignment]
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
    axis = _time_axis(conn, filters, buckets)
    cells = _all_cells(conn, filters, axis, connect) if axis is not None else ()
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
                *_drift_cells(conn, filters, axis, digests),
                *_eval_drift(conn, filters, axis, digests),
            )
            if has_drift and axis
            else ()
        ),
        drift_references=tuple(_drift_references(conn, digests)) if has_drift else (),
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
        .where(*_conditions(filters, _reports))
        .order_by(_reports.c.id)
    )
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
    for row in result:
        yield tuple(row)


# -- the time axis and the cells -------------------------------------------------------------


def _conditions(filters: ReportFilter, table: Table) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if filters.device is not None:
        where.append(table.c.device_id == filters.device)
    if filters.profile is not None and "profile" in table.c:
        where.append(table.c.profile == filters.profile)
    if filters.since is not None:
        where.append(table.c.started_at >= filters.since)
    return where


def _time_axis(conn: Connection, filters: ReportFilter, buckets: int) -> TimeAxis | None:
    first, last = _extreme(conn, filters, func.min), _extreme(conn, filters, func.max)
    if first is None or last is None:
        return None
    first, last = as_utc(first), as_utc(last)
    span = (last - first).total_seconds()
    # A little past the last start, so it falls inside the last bucket.
    width = max(span / buckets * (1 + 1e-9), 1e-3)
    return TimeAxis(start=first, width_s=width, count=buckets)


def _extreme(conn: Connection, filters: ReportFilter, which: Any) -> Any:
    """The first (``func.min``) or last (``func.max``) window start ``filters`` select, in
    index probes: without a device, one on the start-time index; for one device, one per bundle
    on the covering index, whose (device, bundle, start) prefix orders each pair's windows in
    time (a scan of one board's million windows otherwise)."""
    r = _reports.c
    where = _conditions(filters, _reports)
    if filters.device is None:
        return conn.scalar(select(which(r.started_at)).where(*where))
    per_bundle = (
        select(which(r.started_at))
        .where(*where, r.bundle_digest == _bundles.c.bundle_digest)
        .correlate(_bundles)
        .scalar_subquery()
    )
    return conn.scalar(select(which(per_bundle)).select_from(_bundles))


def _bucket(conn: Connection, column: Any, axis: TimeAxis) -> ColumnElement[int]:
    """The bucket of ``column`` (a start time), computed by the database. The constants are
    written into the SQL (they are floats edgekit computed): the same expression in SELECT and
    GROUP BY is then one expression to the database, evaluated once per row."""
    if conn.dialect.name == "sqlite":
        # Timestamps are ISO text; julianday reads them (days, as a float).
        days = func.julianday(column) - _number(_julian(axis.start))
        return cast(days * _number(86400.0 / axis.width_s), Integer)
    seconds = func.extract("epoch", column) - _number(axis.start.timestamp())
    return cast(func.floor(seconds / _number(axis.width_s)), Integer)


def _number(value: float) -> ColumnElement[float]:
    return literal_column(repr(float(value)), Float)


def _julian(moment: datetime) -> float:
    return moment.timestamp() / 86400.0 + _JULIAN_EPOCH


def _all_cells(
    conn: Connection,
    filters: ReportFilter,
    axis: TimeAxis,
    connect: Callable[[], AbstractContextManager[Connection]] | None,
) -> tuple[Cell, ...]:
    """Every cell. On SQLite, which sorts a GROUP BY on one core, the work is split in two
    halves read at the same time on two connections (the sort runs outside Python's lock), half
    the windows each: the fleet's boards in two halves, or one board's (or a small fleet's)
    time in two halves."""
    if conn.dialect.name != "sqlite" or connect is None or axis.count < 2:
        return tuple(_cells(conn, filters, axis))
    devices = [] if filters.device is not None else device_ids(conn)
    halves: tuple[ColumnElement[bool], ColumnElement[bool]]
    if len(devices) >= _PARALLEL_DEVICES:
        middle = devices[len(devices) // 2]
        halves = (_reports.c.device_id < middle, _reports.c.device_id >= middle)
    else:
        bucket = _bucket(conn, _reports.c.started_at, axis)
        halves = (bucket < axis.count // 2, bucket >= axis.count // 2)

    def second_half() -> list[Cell]:
        assert connect is not None
        with connect() as other:
            return list(_cells(other, filters, axis, halves[1]))

    with ThreadPoolExecutor(max_workers=1) as pool:
        later = pool.submit(second_half)
        first = list(_cells(conn, filters, axis, halves[0]))
        return (*first, *later.result())


def _epoch(conn: Connection, value: Any) -> ColumnElement[float]:
    """``value`` (a timestamp) as seconds since the epoch, computed by the database: a number
    costs nothing to read back, a timestamp is parsed per row."""
    if conn.dialect.name == "sqlite":
        return (func.julianday(value) - literal(_JULIAN_EPOCH)) * literal(86400.0)
    return cast(func.extract("epoch", value), Float)


def _cells(
    conn: Connection, filters: ReportFilter, axis: TimeAxis, *where: ColumnElement[bool]
) -> Iterator[Cell]:
    r = _reports.c
    bucket = _bucket(conn, r.started_at, axis)
    samples = r.accuracy_samples
    zero = literal(0.0)
    # In Cell's field order: each row becomes a Cell as it is.
    columns = (
        r.device_id, r.bundle_digest, bucket, func.count(),
        _epoch(conn, func.min(r.started_at)), _epoch(conn, func.max(r.started_at)),
        func.max(r.id), func.sum(r.p50_ms), func.sum(r.p90_ms), func.sum(r.p99_ms),
        func.max(r.p99_ms), func.max(r.peak_rss_mb),
        func.count(r.init_ms), func.coalesce(func.sum(r.init_ms), zero),
        func.count(r.first_ms), func.coalesce(func.sum(r.first_ms), zero),
        func.sum(r.accuracy_value * samples), func.sum(samples),
    )  # fmt: skip
    # Grouped by time before bundle: sorting on the short keys first is the cheaper sort, and
    # the groups are the same.
    query = (
        select(*columns)
        .where(*_conditions(filters, _reports), *where)
        .group_by(r.device_id, bucket, r.bundle_digest)
    )
    last = axis.count - 1
    for row in conn.execute(query):
        if 0 <= row[2] <= last:
            yield Cell(*row)
        else:  # the very last start, or one written since the axis was read
            yield Cell(row[0], row[1], min(max(row[2], 0), last), *row[3:])


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


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
    for row in conn.execute(query):
        if filters.active and row.bundle_digest not in reports:
            continue
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
        )


def _count(conn: Connection, table: Table) -> int:
    return conn.scalar(select(func.count()).select_from(table)) or 0


# -- drift -----------------------------------------------------------------------------------

_DRIFT_SUMS = (*ds.COUNT_COLUMNS, *ds.MOMENT_COLUMNS)


def _drift_cells(
    conn: Connection, filters: ReportFilter, axis: TimeAxis, digests: list[str]
) -> Iterator[DriftCell]:
    t = ds.drift_windows.c
    bucket = _bucket(conn, t.started_at, axis).label("bucket")
    # Drift rows carry the bundle, not the profile: a profile's are kept by digest below.
    where = _conditions(filters, ds.drift_windows)
    group = (t.device_id, t.bundle_digest, t.artifact, bucket)
    query = (
        select(
            *group,
            func.count().label("windows"),
            func.max(t.classes).label("classes"),
            func.min(t.channels).label("channels"),
            *(func.sum(t[name]).label(name) for name in _DRIFT_SUMS),
        )
        .where(*where)
        .group_by(*group)
    )
    wanted = set(digests)
    for row in conn.execute(query):
        if row.bundle_digest not in wanted:
            continue
        yield DriftCell(
            device_id=row.device_id,
            bundle_digest=row.bundle_digest,
            artifact=row.artifact,
            source=ds.WATCH_SOURCE,
            bucket=min(max(int(row.bucket), 0), axis.count - 1),
            windows=int(row.windows),
            counts=_counts(row),
        )


def _eval_drift(
    conn: Connection, filters: ReportFilter, axis: TimeAxis, digests: list[str]
) -> Iterator[DriftCell]:
    """Each distinct eval-sample summary of each board, as a cell at the last window that gave
    it (its windows are not counted: the span is what is stored)."""
    t = ds.drift_evals.c
    query = select(ds.drift_evals)
    if filters.device is not None:
        query = query.where(t.device_id == filters.device)
    if filters.since is not None:
        query = query.where(t.last_at >= filters.since)
    wanted = set(digests)
    for row in conn.execute(query):
        if row.bundle_digest not in wanted:
            continue
        last = as_utc(row.last_at)
        bucket = int((last - axis.start).total_seconds() // axis.width_s)
        yield DriftCell(
            device_id=row.device_id,
            bundle_digest=row.bundle_digest,
            artifact=row.artifact,
            source=ds.EVAL_SOURCE,
            bucket=min(max(bucket, 0), axis.count - 1),
            windows=0,
            counts=_counts(row),
            first_at=as_utc(row.first_at),
            last_at=last,
        )


def _drift_references(conn: Connection, digests: list[str]) -> Iterator[DriftReference]:
    t = ds.drift_references.c
    for chunk in chunks(digests):
        for row in conn.execute(select(ds.drift_references).where(t.bundle_digest.in_(chunk))):
            yield DriftReference(row.bundle_digest, row.artifact, _counts(row))


def _counts(row: Any) -> DriftCounts:
    channels = int(row.channels or 0)
    return DriftCounts(
        classes=int(row.classes),
        channels=channels,
        samples=int(row.samples),
        confidence=tuple(int(getattr(row, n)) for n in ds.CONF_COLUMNS),
        class_bins=tuple(int(getattr(row, n)) for n in ds.CLASS_COLUMNS),
        sum_mean=tuple(float(getattr(row, n) or 0.0) for n in ds.MEAN_COLUMNS[:channels]),
        sum_square=tuple(float(getattr(row, n) or 0.0) for n in ds.SQUARE_COLUMNS[:channels]),
    )


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
