"""Reading a SQLite file another process is writing (a daemon's outbox, a collector's database).

The writer may hold its write lock, or may have just created the file and not yet its tables;
both pass. A read waits for the lock (busy timeout) and is retried for a few seconds, so what
it returns is always a real count, never a guess.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

RETRY_S = 10.0


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on ``path``, opened read-only; sqlite3.OperationalError if it still
    fails after RETRY_S seconds."""
    deadline = time.monotonic() + RETRY_S
    while True:
        try:
            uri = f"file:{path}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=RETRY_S)) as db:
                return db.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def scalar(path: Path, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """The one value ``sql`` selects."""
    return query(path, sql, params)[0][0]
