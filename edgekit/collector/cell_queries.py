"""The report's cells read from the reports: the time axis, time buckets, and the aggregate.

A cell is the windows of one device on one bundle in one time bucket, as exact sums and
extremes (``snapshot.Cell``). The aggregate reads the covering index ``ix_reports_cells`` only;
the time axis is found by index probes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
    cast,
    func,
    literal,
    literal_column,
    select,
)

from edgekit.collector.snapshot import Cell, ReportFilter, TimeAxis
from edgekit.collector.tables import Bundle, Device, ReportRow, as_utc

# The Julian day of 1970-01-01 00:00 UTC: SQLite's julianday() of the Unix epoch.
_JULIAN_EPOCH = 2440587.5
# Fleets of at least this many boards are read in two halves of boards at once on SQLite
# (smaller fleets, and one board, in two halves of time).
_PARALLEL_DEVICES = 64

_bundles: Table = Bundle.__table__  # type: ignore[assignment]
_devices: Table = Device.__table__  # type: ignore[assignment]
_reports: Table = ReportRow.__table__  # type: ignore[assignment]


def conditions(filters: ReportFilter, table: Table) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if filters.device is not None:
        where.append(table.c.device_id == filters.device)
    if filters.profile is not None and "profile" in table.c:
        where.append(table.c.profile == filters.profile)
    if filters.since is not None:
        where.append(table.c.started_at >= filters.since)
    return where


def time_axis(conn: Connection, filters: ReportFilter, buckets: int) -> TimeAxis | None:
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
    where = conditions(filters, _reports)
    if filters.device is None:
        return conn.scalar(select(which(r.started_at)).where(*where))
    per_bundle = (
        select(which(r.started_at))
        .where(*where, r.bundle_digest == _bundles.c.bundle_digest)
        .correlate(_bundles)
        .scalar_subquery()
    )
    return conn.scalar(select(which(per_bundle)).select_from(_bundles))


def bucket_of(conn: Connection, column: Any, axis: TimeAxis) -> ColumnElement[int]:
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


def all_cells(
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
    ids = _devices.c.device_id
    devices = [] if filters.device is not None else list(conn.scalars(select(ids).order_by(ids)))
    halves: tuple[ColumnElement[bool], ColumnElement[bool]]
    if len(devices) >= _PARALLEL_DEVICES:
        middle = devices[len(devices) // 2]
        halves = (_reports.c.device_id < middle, _reports.c.device_id >= middle)
    else:
        bucket = bucket_of(conn, _reports.c.started_at, axis)
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
    bucket = bucket_of(conn, r.started_at, axis)
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
        .where(*conditions(filters, _reports), *where)
        .group_by(r.device_id, bucket, r.bundle_digest)
    )
    last = axis.count - 1
    for row in conn.execute(query):
        if 0 <= row[2] <= last:
            yield Cell(*row)
        else:  # the very last start, or one written since the axis was read
            yield Cell(row[0], row[1], min(max(row[2], 0), last), *row[3:])
