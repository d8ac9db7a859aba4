"""Drift in the collector's database: one row per report window and source, one per reference.

Reports keep their drift block in ``raw_json`` too, but the fleet report sums histograms over a
million windows, which SQL does in one pass over fixed integer columns and JSON parsing does not.
So each summary is stored in fixed bins: the 10 confidence bins, predicted classes folded into
``CLASS_BINS`` contiguous groups (the classes themselves for models with up to 16), and input
statistics folded into ``CHANNEL_BINS`` groups of channels (sample-weighted mean and mean square,
which add up exactly). The tables are optional: a database created before them reads as having
no drift, and a collector adds them when it opens such a database.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from sqlalchemy import Column, Connection, DateTime, Float, Index, Integer, String, Table, insert

from edgekit.collector.intake import AcceptedReport
from edgekit.collector.rows import TimeEncoder, sqlite_time, utc
from edgekit.collector.tables import Base
from edgekit.drift import CONFIDENCE_BINS, DriftSummary, fold

CLASS_BINS = 16
CHANNEL_BINS = 4
CONF_COLUMNS = tuple(f"conf_{i}" for i in range(CONFIDENCE_BINS))
CLASS_COLUMNS = tuple(f"cls_{i}" for i in range(CLASS_BINS))
# Per channel group: samples * mean, and samples * mean of squares (so sums stay exact).
MEAN_COLUMNS = tuple(f"sum_mean_{i}" for i in range(CHANNEL_BINS))
SQUARE_COLUMNS = tuple(f"sum_sq_{i}" for i in range(CHANNEL_BINS))
COUNT_COLUMNS = ("samples", *CONF_COLUMNS, *CLASS_COLUMNS)
MOMENT_COLUMNS = (*MEAN_COLUMNS, *SQUARE_COLUMNS)

EVAL_SOURCE = "eval"
WATCH_SOURCE = "watch"

_OPTIONAL = {"optional": True}


def _summary_columns() -> list[Column[Any]]:
    return [
        Column("classes", Integer, nullable=False),  # the model's classes before folding
        Column("channels", Integer, nullable=False),  # channel groups stored, 0 to CHANNEL_BINS
        *(Column(name, Integer, nullable=False) for name in COUNT_COLUMNS),
        *(Column(name, Float) for name in MOMENT_COLUMNS),
    ]


drift_windows = Table(
    "drift_windows",
    Base.metadata,
    Column("message_id", String(64), primary_key=True),
    Column("source", String(8), primary_key=True),
    Column("device_id", String(64), nullable=False),
    Column("bundle_digest", String(64), nullable=False),
    Column("artifact", String(128), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    *_summary_columns(),
    Index("ix_drift_windows_device_started", "device_id", "started_at"),
    Index("ix_drift_windows_started", "started_at"),
    info=_OPTIONAL,
)

drift_references = Table(
    "drift_references",
    Base.metadata,
    Column("bundle_digest", String(64), primary_key=True),
    Column("artifact", String(128), primary_key=True),
    *_summary_columns(),
    info=_OPTIONAL,
)


_WINDOW_COLUMNS = (
    "message_id", "source", "device_id", "bundle_digest", "artifact", "started_at",
    "classes", "samples", *CONF_COLUMNS, *CLASS_COLUMNS, "channels", *MOMENT_COLUMNS,
)  # fmt: skip
_SQLITE_INSERT_WINDOWS = (
    f"INSERT INTO drift_windows ({', '.join(_WINDOW_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _WINDOW_COLUMNS)}) "
    "ON CONFLICT (message_id, source) DO NOTHING"
)
_window_values = itemgetter(*_WINDOW_COLUMNS)


def summary_values(summary: DriftSummary) -> dict[str, Any]:
    """The binned columns of one summary."""
    values: dict[str, Any] = {
        "classes": len(summary.classes),
        "samples": summary.samples,
        **dict(zip(CONF_COLUMNS, summary.confidence, strict=True)),
        **dict(zip(CLASS_COLUMNS, fold(summary.classes, CLASS_BINS), strict=True)),
    }
    means, squares = _channel_groups(summary)
    values["channels"] = len(means)
    for i in range(CHANNEL_BINS):
        have = i < len(means)
        values[MEAN_COLUMNS[i]] = summary.samples * means[i] if have else None
        values[SQUARE_COLUMNS[i]] = summary.samples * squares[i] if have else None
    return values


def window_rows(
    items: Iterable[AcceptedReport], *, time: TimeEncoder = utc
) -> list[dict[str, Any]]:
    """The drift_windows rows of ``items`` (none for reports without drift); ``time`` encodes
    their timestamps."""
    rows = []
    for item in items:
        r = item.report
        if r.drift is None:
            continue
        for source, summary in (
            (EVAL_SOURCE, r.drift.eval_sample),
            (WATCH_SOURCE, r.drift.watched),
        ):
            if summary is not None:
                rows.append(
                    {
                        "message_id": r.message_id,
                        "source": source,
                        "device_id": r.device_id,
                        "bundle_digest": r.bundle_digest,
                        "artifact": r.artifact,
                        "started_at": time(r.started_at),
                        **summary_values(summary),
                    }
                )
    return rows


def reference_rows(items: Iterable[AcceptedReport]) -> list[dict[str, Any]]:
    """One drift_references row per (bundle, artifact) among ``items`` that carry a reference."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for item in items:
        r = item.report
        if r.drift is None or r.drift.reference is None:
            continue
        key = (r.bundle_digest, r.artifact)
        if key not in rows:
            rows[key] = {
                "bundle_digest": r.bundle_digest,
                "artifact": r.artifact,
                **summary_values(r.drift.reference),
            }
    return [rows[k] for k in sorted(rows)]


def write_drift(conn: Connection, items: list[AcceptedReport]) -> None:
    """Store the drift of ``items`` beside their reports (repeats of a stored window are skipped,
    so a redelivered report adds nothing)."""
    if conn.dialect.name == "sqlite":
        # Straight to the driver, like the reports themselves: one row per report on the
        # collector's hot path, where SQLAlchemy's per-row processing would cost ~10 us each.
        windows = window_rows(items, time=sqlite_time)
        if windows:
            conn.exec_driver_sql(_SQLITE_INSERT_WINDOWS, [_window_values(w) for w in windows])
    elif windows := window_rows(items):
        _insert_ignoring_repeats(conn, drift_windows, windows, ("message_id", "source"))
    references = reference_rows(items)
    if references:
        _insert_ignoring_repeats(conn, drift_references, references, ("bundle_digest", "artifact"))


def _insert_ignoring_repeats(
    conn: Connection, table: Table, rows: list[dict[str, Any]], key: tuple[str, ...]
) -> None:
    dialect = conn.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(table).on_conflict_do_nothing(index_elements=list(key)), rows)
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(table).on_conflict_do_nothing(index_elements=list(key)), rows)
    else:
        from sqlalchemy import select, tuple_

        keys = [tuple(row[k] for k in key) for row in rows]
        columns = tuple_(*(table.c[k] for k in key))
        stored = {
            tuple(r)
            for r in conn.execute(select(*(table.c[k] for k in key)).where(columns.in_(keys)))
        }
        fresh = [row for row, k in zip(rows, keys, strict=True) if k not in stored]
        if fresh:
            conn.execute(insert(table), fresh)


def _channel_groups(summary: DriftSummary) -> tuple[list[float], list[float]]:
    """Per channel group: mean and mean of squares (groups of channels pool their values)."""
    means, stds = summary.channel_mean, summary.channel_std
    channels = len(means)
    groups = min(channels, CHANNEL_BINS)
    out_mean, out_sq = [0.0] * groups, [0.0] * groups
    sizes = [0] * groups
    for c in range(channels):
        g = c * groups // channels
        out_mean[g] += means[c]
        out_sq[g] += stds[c] ** 2 + means[c] ** 2
        sizes[g] += 1
    return (
        [m / s for m, s in zip(out_mean, sizes, strict=True)],
        [q / s for q, s in zip(out_sq, sizes, strict=True)],
    )
