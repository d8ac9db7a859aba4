"""The report's drift read from the drift tables: watched windows per bucket, eval-sample runs,
and the build's references (see ``drift_store``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, func, select

from edgekit.collector import drift_store as ds
from edgekit.collector.cell_queries import bucket_of, conditions
from edgekit.collector.snapshot import (
    DriftCell,
    DriftCounts,
    DriftReference,
    ReportFilter,
    TimeAxis,
)
from edgekit.collector.tables import as_utc

# Bound parameters per IN (...) list; far below SQLite's and PostgreSQL's limits.
_IN_CHUNK = 500

_DRIFT_SUMS = (*ds.COUNT_COLUMNS, *ds.MOMENT_COLUMNS)


def drift_cells(
    conn: Connection, filters: ReportFilter, axis: TimeAxis, digests: list[str]
) -> Iterator[DriftCell]:
    t = ds.drift_windows.c
    bucket = bucket_of(conn, t.started_at, axis).label("bucket")
    # Drift rows carry the bundle, not the profile: a profile's are kept by digest below.
    where = conditions(filters, ds.drift_windows)
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


def eval_drift(
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


def drift_references(conn: Connection, digests: list[str]) -> Iterator[DriftReference]:
    t = ds.drift_references.c
    for start in range(0, len(digests), _IN_CHUNK):
        chunk = digests[start : start + _IN_CHUNK]
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
