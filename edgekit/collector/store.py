"""The collector's database: devices, bundles, reports, statuses and rejected messages.

SQLite by default, any SQLAlchemy URL otherwise (PostgreSQL: ``postgresql+psycopg://...``).
De-duplication rests on the unique ``reports.message_id`` constraint, so it holds with several
collectors writing at once; the look-up before inserting only spares the common republish case an
aborted transaction. Every SQLAlchemy error leaves this module as a ``StoreError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    case,
    create_engine,
    distinct,
    event,
    func,
    insert,
    inspect,
    make_url,
    select,
    update,
)
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    IntegrityError,
    NoSuchModuleError,
    SQLAlchemyError,
)

from edgekit.collector.intake import AcceptedReport, Intake, Rejection, StatusUpdate
from edgekit.collector.snapshot import (
    BundleRow,
    DeviceBundleRow,
    DeviceRow,
    FleetSnapshot,
    RejectedEntry,
)
from edgekit.collector.tables import (
    REJECTED_PAYLOAD_KEEP,
    Base,
    Bundle,
    Device,
    RejectedRow,
    ReportRow,
    StatusRow,
    as_utc,
)
from edgekit.errors import MissingDependencyError, StoreError
from edgekit.schema import Report, utc_now
from edgekit.vocab import DeviceStatus

DEFAULT_DB_URL = "sqlite:///edgekit.db"
# Bound parameters per IN (...) list; far below SQLite's and PostgreSQL's limits.
_IN_CHUNK = 500
# A racing collector can make a batch hit the unique constraint; the retry then sees its rows.
_INTEGRITY_RETRIES = 3

_devices: Table = Device.__table__  # type: ignore[assignment]
_bundles: Table = Bundle.__table__  # type: ignore[assignment]
_reports: Table = ReportRow.__table__  # type: ignore[assignment]
_statuses: Table = StatusRow.__table__  # type: ignore[assignment]
_rejected: Table = RejectedRow.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one committed batch did."""

    stored: int = 0
    duplicates: int = 0
    status_changes: int = 0
    rejected: int = 0

    def plus(self, other: BatchResult) -> BatchResult:
        """Both results added up."""
        return BatchResult(
            self.stored + other.stored,
            self.duplicates + other.duplicates,
            self.status_changes + other.status_changes,
            self.rejected + other.rejected,
        )


class _Refused(Exception):
    """The database refused a row for what it contains (not because it is unavailable)."""


@dataclass(slots=True)
class _Plan:
    """A batch split by kind, with repeats of a message id inside the batch already dropped."""

    reports: list[AcceptedReport] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    in_batch_duplicates: int = 0

    @classmethod
    def of(cls, items: Iterable[Intake]) -> _Plan:
        plan = cls()
        seen: set[str] = set()
        for item in items:
            if isinstance(item, AcceptedReport):
                if item.report.message_id in seen:
                    plan.in_batch_duplicates += 1
                    continue
                seen.add(item.report.message_id)
                plan.reports.append(item)
            elif isinstance(item, StatusUpdate):
                plan.statuses.append(item)
            else:
                plan.rejections.append(item)
        return plan


class Store:
    """A database of fleet reports; one instance per process, safe to share between threads."""

    def __init__(
        self, url: str = DEFAULT_DB_URL, *, create: bool = True, timeout_s: float = 10.0
    ) -> None:
        """Open (and with ``create``, set up) the database; ``create=False`` is for readers,
        which must not leave an empty database behind a mistyped path."""
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StoreError(f"not a database URL: {url!r}") from exc
        self.display_url = parsed.render_as_string(hide_password=True)
        if not create and parsed.get_backend_name() == "sqlite":
            path = parsed.database or ""
            if path in ("", ":memory:") or not Path(path).is_file():
                raise StoreError(f"no SQLite database at {path or '(memory)'!r}")
        self._engine = _engine(parsed.render_as_string(hide_password=False), timeout_s)
        if create:
            with self._guard("opening the database"):
                Base.metadata.create_all(self._engine)
        else:
            with self._guard("opening the database"):
                missing = [
                    t for t in Base.metadata.tables if not inspect(self._engine).has_table(t)
                ]
            if missing:
                self.close()
                raise StoreError(
                    f"{self.display_url} is not an edgekit collector database "
                    f"(missing tables: {', '.join(sorted(missing))})"
                )

    def close(self) -> None:
        """Release every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------

    def add_batch(self, items: Sequence[Intake]) -> BatchResult:
        """Store reports, status changes and rejections in one transaction; commit before return.

        Reports whose message id is already stored (or repeated in the batch) are counted as
        duplicates and not stored again. A report the database refuses (a NUL character in a
        PostgreSQL string, an integer beyond 64 bits) is stored as a rejection instead, so one
        bad report neither stops the collector nor passes for a database outage.
        """
        plan = _Plan.of(items)
        try:
            return self._commit(plan)
        except _Refused:
            return self._commit_one_by_one(plan)

    def _commit(self, plan: _Plan) -> BatchResult:
        for attempt in range(_INTEGRITY_RETRIES):
            try:
                with self._guard("storing a batch", isolate=True), self._engine.begin() as conn:
                    return self._write(conn, plan, look_up_existing=True)
            except IntegrityError as exc:
                if attempt == _INTEGRITY_RETRIES - 1:
                    raise self._error("storing a batch", exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _commit_one_by_one(self, plan: _Plan) -> BatchResult:
        """Commit each report alone, turning the refused ones into rejections."""
        totals = BatchResult(duplicates=plan.in_batch_duplicates)
        refused: list[Rejection] = []
        for item in plan.reports:
            try:
                totals = totals.plus(self._commit(_Plan(reports=[item])))
            except _Refused as exc:
                payload = item.raw if item.raw is not None else item.report.to_json()
                reason = f"database refused the report: {exc}"
                refused.append(Rejection(item.topic, payload, reason, item.received_at))
        rest = _Plan(statuses=plan.statuses, rejections=plan.rejections + refused)
        return totals.plus(self._commit(rest))

    def add_report(self, report: Report, *, received_at: datetime | None = None) -> bool:
        """Store one report and commit; False when its message id was already stored."""
        plan = _Plan(reports=[AcceptedReport(report, received_at or utc_now())])
        try:
            with self._guard("storing a report"), self._engine.begin() as conn:
                self._write(conn, plan, look_up_existing=False)
        except IntegrityError as exc:
            # The unique constraint on message_id is the arbiter; anything else is a real fault.
            if report.message_id in self.message_ids([report.message_id]):
                return False
            raise self._error("storing a report", exc) from exc
        return True

    def add_status(
        self,
        device_id: str,
        status: DeviceStatus,
        *,
        retained: bool = False,
        received_at: datetime | None = None,
    ) -> bool:
        """Record a device's status and commit; True when it changed (and a row was added)."""
        update_ = StatusUpdate(device_id, status, retained, received_at or utc_now())
        return self.add_batch([update_]).status_changes == 1

    def add_rejected(
        self, topic: str, payload: bytes, reason: str, *, received_at: datetime | None = None
    ) -> None:
        """Record a message that was not stored, and why; commits."""
        self.add_batch([Rejection(topic, payload, reason, received_at or utc_now())])

    def _write(self, conn: Connection, plan: _Plan, *, look_up_existing: bool) -> BatchResult:
        self._touch_devices(conn, plan)
        first_by_digest: dict[str, Report] = {}
        for item in plan.reports:
            first_by_digest.setdefault(item.report.bundle_digest, item.report)
        _insert_missing(
            conn,
            _bundles,
            "bundle_digest",
            # Sorted for the same reason as devices: concurrent inserts lock in one order.
            [
                _bundle_row(first_by_digest[d], plan.reports[0].received_at)
                for d in sorted(first_by_digest)
            ],
        )
        stored = _insert_reports(conn, plan.reports, skip_stored=look_up_existing)
        changes = self._record_statuses(conn, plan.statuses)
        if plan.rejections:
            conn.execute(insert(_rejected), [_rejected_row(r) for r in plan.rejections])
        return BatchResult(
            stored=stored,
            duplicates=plan.in_batch_duplicates + len(plan.reports) - stored,
            status_changes=changes,
            rejected=len(plan.rejections),
        )

    def _touch_devices(self, conn: Connection, plan: _Plan) -> None:
        seen: dict[str, datetime] = {}
        latest: dict[str, Report] = {}
        for item in plan.reports:
            device = item.report.device_id
            seen[device] = max(seen.get(device, item.received_at), item.received_at)
            latest[device] = item.report
        for status in plan.statuses:
            seen[status.device_id] = max(
                seen.get(status.device_id, status.received_at), status.received_at
            )
        # Bind names differ from column names: SQLAlchemy reserves those in SET clauses.
        hosts = {
            device: {"d": device, **{f"h_{k}": v for k, v in r.host.model_dump().items()}}
            for device, r in latest.items()
        }
        if not seen:
            return
        # Sorted, so two collectors lock device rows in the same order and cannot deadlock.
        order = sorted(seen)
        _insert_missing(
            conn,
            _devices,
            "device_id",
            [{"device_id": d, "first_seen": seen[d], "last_seen": seen[d]} for d in order],
        )
        when = bindparam("t", type_=_devices.c.last_seen.type)
        conn.execute(
            update(_devices)
            .where(_devices.c.device_id == bindparam("d"))
            .values(
                last_seen=case((_devices.c.last_seen < when, when), else_=_devices.c.last_seen)
            ),
            [{"d": d, "t": seen[d]} for d in order],
        )
        if hosts:
            conn.execute(
                update(_devices)
                .where(_devices.c.device_id == bindparam("d"))
                .values(
                    hostname=bindparam("h_hostname"),
                    machine=bindparam("h_machine"),
                    system=bindparam("h_system"),
                    python=bindparam("h_python"),
                    cpu_count=bindparam("h_cpu_count"),
                ),
                [hosts[d] for d in sorted(hosts)],
            )

    def _record_statuses(self, conn: Connection, statuses: list[StatusUpdate]) -> int:
        if not statuses:
            return 0
        ids = sorted({s.device_id for s in statuses})
        current: dict[str, str | None] = {}
        for chunk in _chunks(ids):
            rows = conn.execute(
                select(_devices.c.device_id, _devices.c.last_status).where(
                    _devices.c.device_id.in_(chunk)
                )
            )
            current.update({row.device_id: row.last_status for row in rows})
        # Retained statuses come again on every (re)subscription: only changes become rows.
        changes = []
        for status in statuses:
            if current.get(status.device_id) != status.status:
                current[status.device_id] = status.status
                changes.append(status)
        if not changes:
            return 0
        conn.execute(
            insert(_statuses),
            [
                {
                    "device_id": s.device_id,
                    "status": s.status,
                    "retained": s.retained,
                    "received_at": s.received_at,
                }
                for s in changes
            ],
        )
        last = {s.device_id: s for s in changes}
        conn.execute(
            update(_devices)
            .where(_devices.c.device_id == bindparam("d"))
            .values(last_status=bindparam("s"), status_at=bindparam("t")),
            [{"d": d, "s": last[d].status, "t": last[d].received_at} for d in sorted(last)],
        )
        return len(changes)

    # -- reading -----------------------------------------------------------------------------

    def message_ids(
        self, candidates: Iterable[str] | None = None, *, conn: Connection | None = None
    ) -> set[str]:
        """The stored report message ids (only those among ``candidates`` when given)."""
        with self._guard("reading message ids"), self._connection(conn) as c:
            if candidates is None:
                return set(c.scalars(select(_reports.c.message_id)))
            found: set[str] = set()
            for chunk in _chunks(list(candidates)):
                found.update(
                    c.scalars(select(_reports.c.message_id).where(_reports.c.message_id.in_(chunk)))
                )
            return found

    def snapshot(self, *, rejected_limit: int = 20) -> FleetSnapshot:
        """Everything the fleet report shows, aggregated in the database."""
        with self._guard("reading the fleet"), self._engine.connect() as conn:
            return FleetSnapshot(
                taken_at=utc_now(),
                devices=tuple(_device_rows(conn)),
                bundles=tuple(_bundle_rows(conn)),
                device_bundles=tuple(_device_bundle_rows(conn)),
                report_count=conn.scalar(select(func.count()).select_from(_reports)) or 0,
                status_count=conn.scalar(select(func.count()).select_from(_statuses)) or 0,
                rejected_count=conn.scalar(select(func.count()).select_from(_rejected)) or 0,
                recent_rejected=tuple(
                    RejectedEntry(r.topic, r.reason, r.payload_bytes, as_utc(r.received_at))
                    for r in conn.execute(
                        select(_rejected).order_by(_rejected.c.id.desc()).limit(rejected_limit)
                    )
                ),
            )

    # -- plumbing ----------------------------------------------------------------------------

    @contextmanager
    def _connection(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self._engine.connect() as own:
                yield own

    @contextmanager
    def _guard(self, action: str, *, isolate: bool = False) -> Iterator[None]:
        """Translate database failures (IntegrityError is left to the caller, which expects it;
        with ``isolate``, so is a refusal of the data itself)."""
        try:
            yield
        except IntegrityError:
            raise
        except (DataError, OverflowError) as exc:
            if isolate:
                raise _Refused(_detail(exc)) from exc
            raise StoreError(f"{action} failed on {self.display_url}: {_detail(exc)}") from exc
        except SQLAlchemyError as exc:
            raise self._error(action, exc) from exc

    def _error(self, action: str, exc: SQLAlchemyError) -> StoreError:
        return StoreError(f"{action} failed on {self.display_url}: {_detail(exc)}")


def _detail(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _engine(url: str, timeout_s: float) -> Engine:
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
        event.listen(engine, "begin", _sqlite_begin_immediate)
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


def _sqlite_begin_immediate(conn: Connection) -> None:
    # Take the write lock up front: a deferred transaction that reads and then writes fails at
    # once (no busy wait) when another collector committed in between.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _insert_missing(conn: Connection, table: Table, key: str, rows: list[dict[str, Any]]) -> None:
    """Insert the rows whose key is not in the table yet, without aborting on a racing insert."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(table).on_conflict_do_nothing(index_elements=[key]), rows)
        return
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(table).on_conflict_do_nothing(index_elements=[key]), rows)
        return
    column = table.c[key]
    existing: set[Any] = set()
    for chunk in _chunks([row[key] for row in rows]):
        existing.update(conn.scalars(select(column).where(column.in_(chunk))))
    missing = [row for row in rows if row[key] not in existing]
    if missing:
        conn.execute(insert(table), missing)


def _utc(value: datetime) -> datetime:
    # SQLite's DATETIME keeps wall-clock digits and drops the offset: store UTC everywhere.
    return value.astimezone(UTC)


_REPORT_COLUMNS = tuple(c.name for c in _reports.columns if c.name != "id")
_SQLITE_INSERT_REPORTS = (
    f"INSERT INTO reports ({', '.join(_REPORT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _REPORT_COLUMNS)})"
)
_ZERO = timedelta(0)


def _insert_reports(conn: Connection, items: list[AcceptedReport], *, skip_stored: bool) -> int:
    """Insert report rows and return how many were new.

    With ``skip_stored``, ids already in the table are skipped instead of aborting the
    transaction; without it a stored id raises IntegrityError. Either way the unique constraint
    decides, so it holds against a collector writing at the same time.

    On SQLite the rows go straight to the driver's executemany, with ``ON CONFLICT DO NOTHING``
    instead of a look-up first. Measured on the ingest path: SQLAlchemy's per-row parameter
    processing, the dict per row and the look-up cost ~15 us of ~110 us per message, the
    difference between missing and meeting 10,000 reports/s. Timestamps are written as exactly
    the text SQLAlchemy's SQLite DateTime type writes and reads back.
    """
    if not items:
        return 0
    if conn.dialect.name == "sqlite":
        sql = _SQLITE_INSERT_REPORTS
        if skip_stored:
            sql += " ON CONFLICT (message_id) DO NOTHING"
        result = conn.exec_driver_sql(sql, [_report_values(i, time=_sqlite_time) for i in items])
        # sqlite3 sums the rows changed over all parameter sets of an executemany.
        return int(result.rowcount)
    if skip_stored:
        stored: set[str] = set()
        ids = [i.report.message_id for i in items]
        for chunk in _chunks(ids):
            stored.update(
                conn.scalars(select(_reports.c.message_id).where(_reports.c.message_id.in_(chunk)))
            )
        items = [i for i in items if i.report.message_id not in stored]
        if not items:
            return 0
    conn.execute(
        insert(_reports),
        [dict(zip(_REPORT_COLUMNS, _report_values(i), strict=True)) for i in items],
    )
    return len(items)


def _sqlite_time(value: datetime) -> str:
    if value.utcoffset() != _ZERO:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _bundle_row(report: Report, received_at: datetime) -> dict[str, Any]:
    build = report.build
    return {
        "bundle_digest": report.bundle_digest,
        "bundle_id": report.bundle_id,
        "profile": report.profile,
        "artifact": report.artifact,
        "format": report.format,
        "est_latency_ms": build.est_latency_ms,
        "metric": build.metric,
        "fp32": build.fp32,
        "quantized": build.quantized,
        "model_bytes": build.model_bytes,
        "first_seen": received_at,
    }


def _report_values(item: AcceptedReport, *, time: Any = _utc) -> tuple[Any, ...]:
    """One reports row, in ``_REPORT_COLUMNS`` order."""
    r, lat, acc = item.report, item.report.latency, item.report.accuracy
    return (
        r.message_id,
        r.device_id,
        r.bundle_digest,
        r.bundle_id,
        r.profile,
        r.format,
        r.backend,
        r.backend_version,
        r.threads,
        r.sequence,
        time(r.started_at),
        time(r.finished_at),
        time(item.received_at),
        lat.count,
        lat.mean_ms,
        lat.std_ms,
        lat.min_ms,
        lat.p50_ms,
        lat.p90_ms,
        lat.p99_ms,
        lat.max_ms,
        lat.init_ms,
        lat.first_ms,
        acc.metric if acc else None,
        acc.value if acc else None,
        acc.samples if acc else None,
        r.peak_rss_mb,
        r.build.est_latency_ms,
        r.dropped_reports,
        r.workload_inputs,
        (item.raw if item.raw is not None else r.to_json()).decode(),
    )


def _rejected_row(item: Rejection) -> dict[str, Any]:
    return {
        # PostgreSQL text cannot hold NUL; a reason may quote a sender's bytes.
        "topic": item.topic[:1024].replace("\x00", "\\x00"),
        "payload": item.payload[:REJECTED_PAYLOAD_KEEP],
        "payload_bytes": len(item.payload),
        "truncated": len(item.payload) > REJECTED_PAYLOAD_KEEP,
        "reason": item.reason[:1024].replace("\x00", "\\x00"),
        "received_at": item.received_at,
    }


def _device_rows(conn: Connection) -> Iterator[DeviceRow]:
    per_device = (
        select(
            _reports.c.device_id,
            func.count().label("reports"),
            func.count(distinct(_reports.c.bundle_digest)).label("bundles"),
        )
        .group_by(_reports.c.device_id)
        .subquery()
    )
    query = (
        select(_devices, per_device.c.reports, per_device.c.bundles)
        .outerjoin(per_device, per_device.c.device_id == _devices.c.device_id)
        .order_by(_devices.c.device_id)
    )
    for row in conn.execute(query):
        yield DeviceRow(
            device_id=row.device_id,
            hostname=row.hostname,
            machine=row.machine,
            system=row.system,
            reports=row.reports or 0,
            bundles=row.bundles or 0,
            first_seen=as_utc(row.first_seen),
            last_seen=as_utc(row.last_seen),
            last_status=row.last_status,
            status_at=as_utc(row.status_at) if row.status_at else None,
        )


def _bundle_rows(conn: Connection) -> Iterator[BundleRow]:
    per_bundle = (
        select(
            _reports.c.bundle_digest,
            func.count().label("reports"),
            func.count(distinct(_reports.c.device_id)).label("devices"),
        )
        .group_by(_reports.c.bundle_digest)
        .subquery()
    )
    query = (
        select(_bundles, per_bundle.c.reports, per_bundle.c.devices)
        .outerjoin(per_bundle, per_bundle.c.bundle_digest == _bundles.c.bundle_digest)
        .order_by(_bundles.c.profile, _bundles.c.bundle_id, _bundles.c.bundle_digest)
    )
    for row in conn.execute(query):
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
            devices=row.devices or 0,
            reports=row.reports or 0,
        )


def _device_bundle_rows(conn: Connection) -> Iterator[DeviceBundleRow]:
    r, b = _reports.c, _bundles.c
    samples = func.sum(r.accuracy_samples)
    query = (
        select(
            r.device_id,
            r.bundle_digest,
            b.bundle_id,
            b.profile,
            b.est_latency_ms,
            b.model_bytes,
            b.metric,
            b.fp32,
            b.quantized,
            func.max(r.backend).label("backend"),
            func.count().label("reports"),
            func.max(r.received_at).label("last_received_at"),
            func.avg(r.mean_ms).label("mean_ms"),
            func.avg(r.p50_ms).label("p50_ms"),
            func.avg(r.p90_ms).label("p90_ms"),
            func.avg(r.p99_ms).label("p99_ms"),
            func.max(r.p99_ms).label("max_p99_ms"),
            func.max(r.peak_rss_mb).label("peak_rss_mb"),
            func.max(r.accuracy_metric).label("accuracy_metric"),
            # Windows weigh by how many samples they scored.
            (func.sum(r.accuracy_value * r.accuracy_samples) / func.nullif(samples, 0)).label(
                "accuracy"
            ),
            samples.label("accuracy_samples"),
        )
        .join(_bundles, b.bundle_digest == r.bundle_digest)
        .group_by(
            r.device_id,
            r.bundle_digest,
            b.bundle_id,
            b.profile,
            b.est_latency_ms,
            b.model_bytes,
            b.metric,
            b.fp32,
            b.quantized,
        )
        .order_by(r.device_id, b.profile, b.bundle_id)
    )
    for row in conn.execute(query):
        yield DeviceBundleRow(
            device_id=row.device_id,
            bundle_digest=row.bundle_digest,
            bundle_id=row.bundle_id,
            profile=row.profile,
            backend=row.backend,
            reports=row.reports,
            last_received_at=as_utc(row.last_received_at),
            mean_ms=float(row.mean_ms),
            p50_ms=float(row.p50_ms),
            p90_ms=float(row.p90_ms),
            p99_ms=float(row.p99_ms),
            max_p99_ms=float(row.max_p99_ms),
            peak_rss_mb=float(row.peak_rss_mb),
            accuracy_metric=row.accuracy_metric,
            accuracy=None if row.accuracy is None else float(row.accuracy),
            accuracy_samples=None if row.accuracy_samples is None else int(row.accuracy_samples),
            est_latency_ms=row.est_latency_ms,
            model_bytes=row.model_bytes,
            build_metric=row.metric,
            build_fp32=row.fp32,
            build_quantized=row.quantized,
        )
