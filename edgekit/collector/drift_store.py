"""Drift in the collector's database: watched-input windows, eval-sample summaries, references.

Reports keep their drift block in ``raw_json`` too, but the fleet report sums histograms over a
million windows, which SQL does in one pass over fixed integer columns and JSON parsing does not.
So each summary is stored in fixed bins: the 10 confidence bins, predicted classes folded into
``CLASS_BINS`` contiguous groups (the classes themselves for models with up to 16), and input
statistics folded into ``CHANNEL_BINS`` groups of channels (sample-weighted mean and mean square,
which add up exactly).

- ``drift_windows``: one row per report window with watched-folder inputs (they differ from
  window to window).
- ``drift_evals``: the eval sample is the same every window, so a board running one artifact
  says the same about it every time; each distinct summary is one row with the first and last
  window that gave it (an upsert keyed by the summary's digest, so a redelivered report changes
  nothing). A second row for a board means its model said something else on the same samples.
- ``drift_references``: the build's reference, once per bundle artifact.

The tables are optional: a database created before them reads as having no drift, and a
collector adds them when it opens such a database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    func,
    insert,
    select,
    update,
)

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
    Column("device_id", String(64), nullable=False),
    Column("bundle_digest", String(64), nullable=False),
    Column("artifact", String(128), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    *_summary_columns(),
    Index("ix_drift_windows_device_started", "device_id", "started_at"),
    Index("ix_drift_windows_started", "started_at"),
    info=_OPTIONAL,
)

drift_evals = Table(
    "drift_evals",
    Base.metadata,
    Column("device_id", String(64), primary_key=True),
    Column("bundle_digest", String(64), primary_key=True),
    Column("artifact", String(128), primary_key=True),
    Column("summary_digest", String(64), primary_key=True),
    Column("first_at", DateTime(timezone=True), nullable=False),
    Column("last_at", DateTime(timezone=True), nullable=False),
    *_summary_columns(),
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
    "message_id", "device_id", "bundle_digest", "artifact", "started_at",
    "classes", "samples", *CONF_COLUMNS, *CLASS_COLUMNS, "channels", *MOMENT_COLUMNS,
)  # fmt: skip
_SQLITE_INSERT_WINDOWS = (
    f"INSERT INTO drift_windows ({', '.join(_WINDOW_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _WINDOW_COLUMNS)}) "
    "ON CONFLICT (message_id) DO NOTHING"
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
    """The drift_windows rows of ``items``: one per report with watched inputs; ``time``
    encodes their timestamps."""
    rows = []
    for item in items:
        r = item.report
        if r.drift is None or r.drift.watched is None:
            continue
        rows.append(
            {
                "message_id": r.message_id,
                "device_id": r.device_id,
                "bundle_digest": r.bundle_digest,
                "artifact": r.artifact,
                "started_at": time(r.started_at),
                **summary_values(r.drift.watched),
            }
        )
    return rows


def eval_rows(items: Iterable[AcceptedReport]) -> list[dict[str, Any]]:
    """One drift_evals row per board, bundle artifact and distinct eval-sample summary among
    ``items``, spanning the windows that gave it."""
    rows: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for item in items:
        r = item.report
        if r.drift is None or r.drift.eval_sample is None:
            continue
        summary = r.drift.eval_sample
        digest = hashlib.sha256(summary.model_dump_json().encode()).hexdigest()
        key = (r.device_id, r.bundle_digest, r.artifact, digest)
        at = utc(r.started_at)
        row = rows.get(key)
        if row is None:
            rows[key] = {
                "device_id": r.device_id,
                "bundle_digest": r.bundle_digest,
                "artifact": r.artifact,
                "summary_digest": digest,
                "first_at": at,
                "last_at": at,
                **summary_values(summary),
            }
        else:
            row["first_at"], row["last_at"] = min(row["first_at"], at), max(row["last_at"], at)
    return [rows[k] for k in sorted(rows)]


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
        _insert_ignoring_repeats(conn, drift_windows, windows, ("message_id",))
    if evals := eval_rows(items):
        _upsert_evals(conn, evals)
    references = reference_rows(items)
    if references:
        _insert_ignoring_repeats(conn, drift_references, references, ("bundle_digest", "artifact"))


def _upsert_evals(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert each eval summary, or widen the span of windows of the one already stored."""
    dialect = conn.dialect.name
    key = ["device_id", "bundle_digest", "artifact", "summary_digest"]
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert  # type: ignore[assignment]
        least, greatest = (
            (func.min, func.max) if dialect == "sqlite" else (func.least, func.greatest)
        )
        stmt = dialect_insert(drift_evals)
        t = drift_evals.c
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=key,
                set_={
                    "first_at": least(t.first_at, stmt.excluded.first_at),
                    "last_at": greatest(t.last_at, stmt.excluded.last_at),
                },
            ),
            rows,
        )
        return
    for row in rows:  # other databases: read, then insert or update
        where = [drift_evals.c[k] == row[k] for k in key]
        stored = conn.execute(
            select(drift_evals.c.first_at, drift_evals.c.last_at).where(*where)
        ).first()
        if stored is None:
            conn.execute(insert(drift_evals), [row])
        else:
            conn.execute(
                update(drift_evals)
                .where(*where)
                .values(
                    first_at=min(stored.first_at, row["first_at"]),
                    last_at=max(stored.last_at, row["last_at"]),
                )
            )


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
        from sqlalchemy import tuple_

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
