"""Opening the collector's database: the URL, the engine each dialect needs, and its failures.

SQLite gets WAL, durable commits and ``BEGIN IMMEDIATE``; PostgreSQL a connect timeout. Every
SQLAlchemy error that leaves a :class:`Database` guard is a ``StoreError`` naming the database
(with its password hidden).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    IntegrityError,
    NoSuchModuleError,
    SQLAlchemyError,
)

import edgekit.collector.rollout_tables  # noqa: F401  (its optional tables join Base)
from edgekit.collector import drift_store  # noqa: F401  (its optional tables join Base)
from edgekit.collector.tables import Base
from edgekit.errors import MissingDependencyError, StoreError

DEFAULT_DB_URL = "sqlite:///edgekit.db"


class Refused(Exception):
    """The database refused a row for what it contains (not because it is unavailable)."""


@dataclass(frozen=True, slots=True)
class Database:
    """An engine with the URL to name it by in errors."""

    engine: Engine
    display_url: str

    @contextmanager
    def guard(self, action: str, *, isolate: bool = False) -> Iterator[None]:
        """Translate database failures (IntegrityError is left to the caller, which expects it;
        with ``isolate``, so is a refusal of the data itself, as :class:`Refused`)."""
        try:
            yield
        except IntegrityError:
            raise
        except (DataError, OverflowError) as exc:
            if isolate:
                raise Refused(_detail(exc)) from exc
            raise StoreError(f"{action} failed on {self.display_url}: {_detail(exc)}") from exc
        except SQLAlchemyError as exc:
            raise self.error(action, exc) from exc

    def error(self, action: str, exc: SQLAlchemyError) -> StoreError:
        """The StoreError for ``action`` failing with ``exc``."""
        return StoreError(f"{action} failed on {self.display_url}: {_detail(exc)}")

    @contextmanager
    def connection(self, conn: Connection | None = None) -> Iterator[Connection]:
        """``conn`` when given, else a pooled connection of this database's own."""
        if conn is not None:
            yield conn
        else:
            with self.engine.connect() as own:
                yield own

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()


def open_database(url: str, *, create: bool, timeout_s: float) -> Database:
    """Connect to ``url``; with ``create`` set up the tables, without it require them (readers
    must not leave an empty database behind a mistyped path)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r}{_path_hint(url)}") from exc
    display_url = parsed.render_as_string(hide_password=True)
    if not create and parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if path in ("", ":memory:") or not Path(path).is_file():
            raise StoreError(f"no SQLite database at {path or '(memory)'!r}")
    db = Database(
        _engine(parsed.render_as_string(hide_password=False), timeout_s, reader=not create),
        display_url,
    )
    with db.guard("opening the database"):
        if create:
            Base.metadata.create_all(db.engine)
            return db
        missing = [
            name
            for name, table in Base.metadata.tables.items()
            if not table.info.get("optional") and not inspect(db.engine).has_table(name)
        ]
    if missing:
        db.close()
        raise StoreError(
            f"{display_url} is not an edgekit collector database "
            f"(missing tables: {', '.join(sorted(missing))})"
        )
    return db


def _path_hint(url: str) -> str:
    """A hint for a file path given where a URL belongs (``--db fleet.db``)."""
    if "://" in url or not url.strip():
        return ""
    return f"; for a SQLite file write sqlite:///{url}"


def _detail(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _engine(url: str, timeout_s: float, *, reader: bool = False) -> Engine:
    backend = make_url(url).get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args["timeout"] = timeout_s  # how long a writer waits for the file lock
    elif backend == "postgresql":
        connect_args["connect_timeout"] = max(1, round(timeout_s))
    try:
        engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    except NoSuchModuleError as exc:
        raise StoreError(f"unsupported database URL scheme {url.split(':', 1)[0]!r}") from exc
    except ImportError as exc:
        raise MissingDependencyError(
            f"the driver for {url.split(':', 1)[0]!r} is not installed ({exc.name}); "
            "for PostgreSQL: pip install 'psycopg[binary]'"
        ) from exc
    except ArgumentError as exc:
        raise StoreError(f"bad database URL: {exc}") from exc
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        # A reader (the fleet report) takes no write lock: in WAL it never blocks the collector.
        event.listen(engine, "begin", _sqlite_begin if reader else _sqlite_begin_immediate)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" hook issue BEGIN itself (pysqlite's own BEGIN is deferred).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets the report read while the collector writes; FULL makes each commit durable
    # before the collector acknowledges the messages it holds.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def _sqlite_begin_immediate(conn: Connection) -> None:
    # Take the write lock up front: a deferred transaction that reads and then writes fails at
    # once (no busy wait) when another collector committed in between.
    conn.exec_driver_sql("BEGIN IMMEDIATE")
