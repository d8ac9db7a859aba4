"""The collector's database: devices, bundles, reports, statuses and rejected messages.

SQLite by default, any SQLAlchemy URL otherwise (PostgreSQL: ``postgresql+psycopg://...``).
:class:`Store` is the one entry point; it owns the transactions and their retries, and leaves the
work to ``engine`` (opening the database), ``ingest`` (writing a batch) and ``queries`` (reading
it back). Every SQLAlchemy error leaves it as a ``StoreError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from edgekit.collector import ingest, queries
from edgekit.collector.engine import DEFAULT_DB_URL, Refused, open_database
from edgekit.collector.ingest import BatchResult, Plan
from edgekit.collector.intake import AcceptedReport, Intake, Rejection, StatusUpdate
from edgekit.collector.snapshot import FleetSnapshot, ReportFilter
from edgekit.schema import Report, utc_now
from edgekit.vocab import DeviceStatus

__all__ = ["DEFAULT_DB_URL", "BatchResult", "Store"]

# A racing collector can make a batch hit the unique constraint; the retry then sees its rows.
_INTEGRITY_RETRIES = 3


class Store:
    """A database of fleet reports; one instance per process, safe to share between threads."""

    def __init__(
        self, url: str = DEFAULT_DB_URL, *, create: bool = True, timeout_s: float = 10.0
    ) -> None:
        """Open (and with ``create``, set up) the database; ``create=False`` is for readers,
        which must not leave an empty database behind a mistyped path."""
        self._db = open_database(url, create=create, timeout_s=timeout_s)
        # A reader's SQLite transactions take no write lock, so a snapshot may read on two.
        self._reader = not create
        self.display_url = self._db.display_url

    def close(self) -> None:
        """Release every pooled connection."""
        self._db.close()

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
        plan = Plan.of(items)
        try:
            return self._commit(plan)
        except Refused:
            return self._commit_one_by_one(plan)

    def _commit(self, plan: Plan) -> BatchResult:
        for attempt in range(_INTEGRITY_RETRIES):
            try:
                with self._db.guard("storing a batch", isolate=True), self._db.engine.begin() as c:
                    return ingest.write(c, plan, skip_stored=True)
            except IntegrityError as exc:
                if attempt == _INTEGRITY_RETRIES - 1:
                    raise self._db.error("storing a batch", exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _commit_one_by_one(self, plan: Plan) -> BatchResult:
        """Commit each report alone, turning the refused ones into rejections."""
        totals = BatchResult(duplicates=plan.in_batch_duplicates)
        refused: list[Rejection] = []
        for item in plan.reports:
            try:
                totals = totals.plus(self._commit(Plan(reports=[item])))
            except Refused as exc:
                payload = item.raw if item.raw is not None else item.report.to_json()
                reason = f"database refused the report: {exc}"
                refused.append(Rejection(item.topic, payload, reason, item.received_at))
        rest = Plan(statuses=plan.statuses, rejections=plan.rejections + refused)
        return totals.plus(self._commit(rest))

    def add_report(self, report: Report, *, received_at: datetime | None = None) -> bool:
        """Store one report and commit; False when its message id was already stored."""
        plan = Plan(reports=[AcceptedReport(report, received_at or utc_now())])
        try:
            with self._db.guard("storing a report"), self._db.engine.begin() as conn:
                ingest.write(conn, plan, skip_stored=False)
        except IntegrityError as exc:
            # The unique constraint on message_id is the arbiter; anything else is a real fault.
            if report.message_id in self.message_ids([report.message_id]):
                return False
            raise self._db.error("storing a report", exc) from exc
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
        update = StatusUpdate(device_id, status, retained, received_at or utc_now())
        return self.add_batch([update]).status_changes == 1

    def add_rejected(
        self, topic: str, payload: bytes, reason: str, *, received_at: datetime | None = None
    ) -> None:
        """Record a message that was not stored, and why; commits."""
        self.add_batch([Rejection(topic, payload, reason, received_at or utc_now())])

    # -- reading -----------------------------------------------------------------------------

    def message_ids(
        self, candidates: Iterable[str] | None = None, *, conn: Connection | None = None
    ) -> set[str]:
        """The stored report message ids (only those among ``candidates`` when given)."""
        with self._db.guard("reading message ids"), self._db.connection(conn) as c:
            return queries.message_ids(c, candidates)

    def snapshot(
        self,
        *,
        rejected_limit: int = 20,
        filters: ReportFilter | None = None,
        buckets: int = queries.DEFAULT_BUCKETS,
    ) -> FleetSnapshot:
        """Everything the fleet report shows (of the reports ``filters`` select), aggregated in
        the database, with trends over ``buckets`` time buckets."""
        with self._db.guard("reading the fleet"), self._db.engine.connect() as conn:
            connect = self._db.engine.connect if self._reader else None
            return queries.snapshot(conn, rejected_limit=rejected_limit, filters=filters,
                                    buckets=buckets, connect=connect)  # fmt: skip

    def device_ids(self) -> list[str]:
        """Every stored device id, sorted."""
        with self._db.guard("reading devices"), self._db.engine.connect() as conn:
            return queries.device_ids(conn)

    def report_rows(self, filters: ReportFilter | None = None) -> Iterator[tuple[Any, ...]]:
        """Every stored report ``filters`` select, as a tuple of ``queries.ROW_COLUMNS``,
        streamed (a million rows never sit in memory at once)."""
        with self._db.guard("reading reports"), self._db.engine.connect() as conn:
            yield from queries.report_rows(conn, filters or ReportFilter())
