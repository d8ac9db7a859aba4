"""Per-report rows: every stored report as one row of CSV or Parquet (``edgekit report --rows``).

Rows are streamed from the database and written as they come, so a million reports never sit in
memory at once. Parquet needs pyarrow, which edgekit does not install; without it the error says
so and what to use instead.
"""

from __future__ import annotations

import csv
import importlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, DateTime, Float, Integer

from edgekit.collector.queries import ROW_COLUMNS
from edgekit.collector.tables import ReportRow
from edgekit.errors import EdgekitError, MissingDependencyError

ROW_FORMATS = (".csv", ".parquet")
_BATCH = 50_000


def check_rows_path(out: Path) -> None:
    """Refuse a ``--rows`` file whose format edgekit cannot write, before any work is done."""
    if out.suffix.lower() not in ROW_FORMATS:
        raise EdgekitError(f"--rows {out}: per-report rows are written as .csv or .parquet")
    if out.suffix.lower() == ".parquet":
        _pyarrow()


def write_rows(rows: Iterable[tuple[Any, ...]], out: Path) -> int:
    """Write ``rows`` (tuples of ``ROW_COLUMNS``) to ``out`` (.csv or .parquet); how many."""
    check_rows_path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        count = _parquet(rows, tmp) if out.suffix.lower() == ".parquet" else _csv(rows, tmp)
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EdgekitError(f"cannot write rows to {out}: {exc.strerror or exc}") from exc
    return count


def _csv(rows: Iterable[tuple[Any, ...]], out: Path) -> int:
    count = 0
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(ROW_COLUMNS)
        for row in rows:
            writer.writerow(
                ["" if v is None else v.isoformat() if isinstance(v, datetime) else v for v in row]
            )
            count += 1
    return count


def _parquet(rows: Iterable[tuple[Any, ...]], out: Path) -> int:
    pa, pq = _pyarrow()
    schema = pa.schema([(name, _arrow_type(pa, name)) for name in ROW_COLUMNS])
    count = 0
    with pq.ParquetWriter(str(out), schema) as writer:
        for batch in _batches(iter(rows)):
            columns = zip(*batch, strict=True)
            arrays = [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            count += len(batch)
    return count


def _batches(rows: Iterator[tuple[Any, ...]]) -> Iterator[Sequence[tuple[Any, ...]]]:
    while batch := list(islice(rows, _BATCH)):
        yield batch


def _arrow_type(pa: Any, name: str) -> Any:
    kind = ReportRow.__table__.c[name].type
    if isinstance(kind, (Integer, BigInteger)):
        return pa.int64()
    if isinstance(kind, Float):
        return pa.float64()
    if isinstance(kind, DateTime):
        return pa.timestamp("us", tz="UTC")
    return pa.string()


def _pyarrow() -> tuple[Any, Any]:
    try:
        pa = importlib.import_module("pyarrow")
        pq = importlib.import_module("pyarrow.parquet")
    except ImportError as exc:
        raise MissingDependencyError(
            "pyarrow is not installed, and Parquet needs it: pip install pyarrow "
            "(or write the rows as CSV: --rows rows.csv)"
        ) from exc
    return pa, pq
