"""The device's durable outbox: reports wait here, on disk, until the broker acknowledges them.

Delivery is at least once: the daemon puts a report here *before* publishing it and the reporter
removes it only on PUBACK, so a crash, a reboot or a broker outage loses nothing that was put.

Policies:

- Durability: SQLite in WAL mode with ``synchronous=FULL``. A put fsyncs before it returns, so
  a committed report survives SIGKILL *and* power loss (boards get unplugged; with NORMAL a
  WAL commit can roll back on power loss). A report per measurement window makes the fsync cheap.
- Bounded: at most ``max_messages`` entries and ``max_bytes`` of topic + payload. A put that
  would exceed either drops the *oldest* entries (the newest measurements matter most) and adds
  them to :attr:`Outbox.dropped`, a counter stored in the same file, so it survives restarts and
  the daemon can report it in ``Report.dropped_reports``.
- Damaged file: opening a file SQLite reports as corrupt or not a database (SIGKILL cannot do
  that, a failing SD card or a truncated copy can) must not stop the daemon. The file and its
  ``-wal``/``-shm`` companions are moved aside to ``<name>.corrupt-<UTC timestamp>``, a fresh
  empty outbox is created, and :attr:`Outbox.recovered_from` names the kept file so the caller
  can warn once. Nothing is raised. Other failures (permissions, a full disk, a locked file) are
  not corruption and raise :class:`~edgekit.errors.OutboxError`.
- A put of a message id already present is ignored (idempotent), so a retry after a crash
  between put and publish cannot duplicate a report.

Safe to share between threads: the reporter removes entries from paho's network thread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from edgekit.errors import OutboxError

DEFAULT_MAX_MESSAGES = 10_000
# ~2 KB per report: the message bound is reached long before this one in normal use.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
_SCHEMA_VERSION = 1
# SQLite's primary result codes for a damaged file; anything else is not corruption.
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_COMPANIONS = ("-wal", "-shm", "-journal")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Entry:
    """One report waiting for its PUBACK."""

    message_id: str
    topic: str
    payload: bytes


class Outbox:
    """Bounded, durable FIFO of report payloads, keyed by message id."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_messages: int = DEFAULT_MAX_MESSAGES,
    ) -> None:
        if max_messages < 1:
            raise OutboxError(f"outbox max_messages must be at least 1, not {max_messages}")
        if max_bytes < 1:
            raise OutboxError(f"outbox max_bytes must be at least 1, not {max_bytes}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self.recovered_from: Path | None = None
        """Where a damaged outbox file was moved aside on open, or None."""
        self._lock = threading.Lock()
        db = self._connect()
        try:
            _prepare(db)
        except (sqlite3.DatabaseError, _DamagedError) as exc:
            if not _is_corruption(exc):
                db.close()
                raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
            try:
                # Moved while still open: closing the last connection makes SQLite delete the
                # WAL by name, and it belongs to the evidence.
                self.recovered_from = self._move_aside()
            finally:
                db.close()
            db = self._connect()
            try:
                _prepare(db)
            except (sqlite3.Error, _DamagedError) as again:
                db.close()
                raise OutboxError(f"cannot create outbox {self.path}: {again}") from again
        self._db = db
        self._count, self._bytes = self._run(
            lambda: self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(length(topic) + length(payload)), 0) FROM outbox"
            ).fetchone()
        )

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode with explicit BEGIN IMMEDIATE: every write is one short transaction.
            # One connection shared by the caller's and paho's threads, serialized by _lock.
            return sqlite3.connect(
                self.path, timeout=5.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            # Companions go too: a stale WAL left behind would be replayed into the fresh file.
            for suffix in _COMPANIONS:
                companion = self.path.with_name(self.path.name + suffix)
                if companion.exists():
                    companion.rename(target.with_name(target.name + suffix))
            self.path.rename(target)
        except OSError as exc:
            raise OutboxError(
                f"outbox {self.path} is damaged and cannot be moved aside: {exc}"
            ) from exc
        return target

    @property
    def dropped(self) -> int:
        """Reports dropped because the outbox was full, over the life of this file."""
        with self._lock:
            row = self._run(
                lambda: self._db.execute(
                    "SELECT value FROM counters WHERE name = 'dropped'"
                ).fetchone()
            )
        return int(row[0])

    @property
    def size_bytes(self) -> int:
        """Topic and payload bytes currently held."""
        with self._lock:
            return int(self._bytes)

    def __len__(self) -> int:
        with self._lock:
            return int(self._count)

    def put(self, message_id: str, topic: str, payload: bytes) -> bool:
        """Store a report durably before it is published; False if the id is already held."""
        self._check(message_id, topic, payload)
        with self._lock:
            return self._run(lambda: self._put(message_id, topic, bytes(payload)))

    def put_next(self, topic: str, make: Callable[[int], tuple[str, bytes]]) -> tuple[int, str]:
        """Store the report ``make(sequence)`` returns as (message id, payload), with this
        device's next sequence number taken in the same transaction; (sequence, message id).

        Sequence numbers live in the file, so they run on across restarts and crashes without a
        gap: a missing number downstream means a lost report (or one counted in ``dropped``).
        """
        with self._lock:
            return self._run(lambda: self._put_next(topic, make))

    def _check(self, message_id: str, topic: str, payload: bytes) -> int:
        size = len(topic.encode()) + len(payload)
        if not message_id:
            raise OutboxError("outbox message id must not be empty")
        if not topic or any(c in topic for c in "+#\0"):
            raise OutboxError(f"{topic!r} is not an MQTT topic to publish on")
        if size > self.max_bytes:
            raise OutboxError(
                f"report {message_id} of {size} bytes exceeds the outbox limit of "
                f"{self.max_bytes} bytes"
            )
        return size

    def _put(self, message_id: str, topic: str, payload: bytes) -> bool:
        with _transaction(self._db):
            inserted, count, total = self._insert(message_id, topic, payload)
        # Only after COMMIT succeeded: a failed transaction leaves the counters as they were.
        self._count, self._bytes = count, total
        return inserted

    def _put_next(self, topic: str, make: Callable[[int], tuple[str, bytes]]) -> tuple[int, str]:
        with _transaction(self._db):
            row = self._db.execute("SELECT value FROM counters WHERE name = 'sequence'").fetchone()
            sequence = int(row[0])
            message_id, payload = make(sequence)
            self._check(message_id, topic, payload)
            inserted, count, total = self._insert(message_id, topic, bytes(payload))
            if not inserted:
                raise OutboxError(f"report {message_id} is already in the outbox")
            self._db.execute("UPDATE counters SET value = value + 1 WHERE name = 'sequence'")
        self._count, self._bytes = count, total
        return sequence, message_id

    def _insert(self, message_id: str, topic: str, payload: bytes) -> tuple[bool, int, int]:
        """Insert inside the caller's transaction, dropping the oldest entries over the bounds;
        (inserted, new count, new bytes)."""
        size = len(topic.encode()) + len(payload)
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO outbox (message_id, topic, payload) VALUES (?, ?, ?)",
            (message_id, topic, payload),
        )
        if cursor.rowcount == 0:
            return False, self._count, self._bytes
        count, total = self._count + 1, self._bytes + size
        drop_through, dropped = None, 0
        if count > self.max_messages or total > self.max_bytes:
            rows = self._db.execute(
                "SELECT seq, length(topic) + length(payload) FROM outbox ORDER BY seq"
            )
            for seq, row_size in rows:
                if count <= self.max_messages and total <= self.max_bytes:
                    break
                drop_through, dropped = seq, dropped + 1
                count, total = count - 1, total - row_size
            self._db.execute("DELETE FROM outbox WHERE seq <= ?", (drop_through,))
            self._db.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'dropped'", (dropped,)
            )
        return True, count, total

    def get(self, message_id: str) -> Entry | None:
        """The entry with this message id, or None if it was acknowledged or dropped."""
        with self._lock:
            row = self._run(
                lambda: self._db.execute(
                    "SELECT message_id, topic, payload FROM outbox WHERE message_id = ?",
                    (message_id,),
                ).fetchone()
            )
        return None if row is None else Entry(row[0], row[1], bytes(row[2]))

    def pending(self, limit: int) -> list[Entry]:
        """Up to ``limit`` entries, oldest first."""
        with self._lock:
            rows = self._run(
                lambda: self._db.execute(
                    "SELECT message_id, topic, payload FROM outbox ORDER BY seq LIMIT ?",
                    (limit,),
                ).fetchall()
            )
        return [Entry(message_id, topic, bytes(payload)) for message_id, topic, payload in rows]

    def remove(self, message_id: str) -> bool:
        """Forget an acknowledged entry; False if it was not held."""
        with self._lock:
            return self._run(lambda: self._remove(message_id))

    def _remove(self, message_id: str) -> bool:
        with _transaction(self._db):
            row = self._db.execute(
                "DELETE FROM outbox WHERE message_id = ? RETURNING length(topic) + length(payload)",
                (message_id,),
            ).fetchone()
        if row is None:
            return False
        self._count, self._bytes = self._count - 1, self._bytes - row[0]
        return True

    def close(self) -> None:
        """Close the file; further calls raise OutboxError."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r}, entries={self._count}, bytes={self._bytes})"

    def _run(self, operation: Callable[[], _T]) -> _T:
        try:
            return operation()
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: {exc}") from exc


class _DamagedError(Exception):
    """The file opened but SQLite's own check found damage."""


def _prepare(db: sqlite3.Connection) -> None:
    """Set the pragmas, verify the file and create the tables; raises if the file is bad."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    # Truncate the WAL after checkpoints so the disk stays bounded too.
    db.execute("PRAGMA journal_size_limit=4194304")
    # quick_check reads every page (O(N)) without the costly index cross-checks; it catches
    # truncation and garbage, which is what a board's storage produces.
    problems = [row[0] for row in db.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise _DamagedError("; ".join(problems[:3]))
    with _transaction(db):
        db.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " message_id TEXT NOT NULL UNIQUE,"
            " topic TEXT NOT NULL,"
            " payload BLOB NOT NULL)"
        )
        db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER)")
        db.execute("INSERT OR IGNORE INTO counters VALUES ('dropped', 0)")
        db.execute("INSERT OR IGNORE INTO counters VALUES ('sequence', 0)")
        db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front, so a second process waits instead of failing
    # half-way through a read-then-write.
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        # SQLite rolls back by itself on some errors (a full disk); a second ROLLBACK would fail
        # and hide the real error.
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _is_corruption(exc: sqlite3.DatabaseError | _DamagedError) -> bool:
    if isinstance(exc, _DamagedError):
        return True
    # Extended result codes carry the primary code in the low byte.
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
