"""The collector's database tables (SQLAlchemy 2.x declarative models).

One row per report with the figures the fleet report reads as real columns (so reports are queried
with SQL, not by parsing JSON), plus the raw payload for anything added to the schema later.
Timestamps are stored in UTC; SQLite hands them back naive, :func:`as_utc` puts the zone back.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Rejected payloads are kept for diagnosis, not archived: a few KiB shows what was wrong.
REJECTED_PAYLOAD_KEEP = 4096
# Tables added after the first release: a database made before them still reads (without them).
_OPTIONAL = {"info": {"optional": True}}


class Base(DeclarativeBase):
    """Declarative base of the collector's schema."""


def as_utc(value: datetime) -> datetime:
    """A timestamp read back from the database, with its UTC zone restored where it was lost."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Device(Base):
    """A board that has reported or published a status."""

    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str | None] = mapped_column(String(255))
    machine: Mapped[str | None] = mapped_column(String(64))
    system: Mapped[str | None] = mapped_column(String(64))
    python: Mapped[str | None] = mapped_column(String(32))
    cpu_count: Mapped[int | None] = mapped_column(Integer)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[str | None] = mapped_column(String(16))
    status_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Bundle(Base):
    """A built artifact as reports describe it; keyed by the digest of its manifest."""

    __tablename__ = "bundles"

    bundle_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    bundle_id: Mapped[str] = mapped_column(String(200), index=True)
    profile: Mapped[str] = mapped_column(String(100))
    artifact: Mapped[str] = mapped_column(String(128))
    format: Mapped[str] = mapped_column(String(16))
    est_latency_ms: Mapped[float | None] = mapped_column(Float)  # None: unknown estimate
    metric: Mapped[str | None] = mapped_column(String(16))
    fp32: Mapped[float | None] = mapped_column(Float)
    quantized: Mapped[float | None] = mapped_column(Float)
    model_bytes: Mapped[int] = mapped_column(BigInteger)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BundleBuild(Base):
    """Build figures of a bundle that came after the bundles table: how many eval-sample samples
    its accuracies were measured on, its variant, and its side-by-side p50 on the build host.

    Optional, like the drift tables: a database made before it reads as having none of these
    figures, and a collector adds it (and fills it as reports of each bundle arrive).
    """

    __tablename__ = "bundle_builds"
    __table_args__ = _OPTIONAL

    bundle_digest: Mapped[str] = mapped_column(
        ForeignKey("bundles.bundle_digest"), primary_key=True
    )
    samples: Mapped[int | None] = mapped_column(Integer)  # None: a bundle from an older edgekit
    variant: Mapped[str | None] = mapped_column(String(64))
    host_p50_ms: Mapped[float | None] = mapped_column(Float)  # the shipped artifact
    host_p50_fp32_ms: Mapped[float | None] = mapped_column(Float)  # its fp32 model


# What ix_reports_cells holds: the grouping keys first, then every column the report aggregates.
REPORT_CELL_COLUMNS = (
    "device_id", "bundle_digest", "started_at", "p50_ms", "p90_ms", "p99_ms", "peak_rss_mb",
    "init_ms", "first_ms", "accuracy_value", "accuracy_samples",
)  # fmt: skip


class ReportRow(Base):
    """One stored report; ``message_id`` is unique, which is what de-duplication rests on."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"))
    bundle_digest: Mapped[str] = mapped_column(ForeignKey("bundles.bundle_digest"))
    bundle_id: Mapped[str] = mapped_column(String(200))
    profile: Mapped[str] = mapped_column(String(100))
    format: Mapped[str] = mapped_column(String(16))
    backend: Mapped[str] = mapped_column(String(32))
    backend_version: Mapped[str] = mapped_column(String(64))
    threads: Mapped[int] = mapped_column(Integer)
    sequence: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    latency_count: Mapped[int] = mapped_column(Integer)
    mean_ms: Mapped[float] = mapped_column(Float)
    std_ms: Mapped[float] = mapped_column(Float)
    min_ms: Mapped[float] = mapped_column(Float)
    p50_ms: Mapped[float] = mapped_column(Float)
    p90_ms: Mapped[float] = mapped_column(Float)
    p99_ms: Mapped[float] = mapped_column(Float)
    max_ms: Mapped[float] = mapped_column(Float)
    init_ms: Mapped[float | None] = mapped_column(Float)
    first_ms: Mapped[float | None] = mapped_column(Float)
    accuracy_metric: Mapped[str | None] = mapped_column(String(16))
    accuracy_value: Mapped[float | None] = mapped_column(Float)
    accuracy_samples: Mapped[int | None] = mapped_column(Integer)
    peak_rss_mb: Mapped[float] = mapped_column(Float)
    est_latency_ms: Mapped[float | None] = mapped_column(Float)
    dropped_reports: Mapped[int] = mapped_column(Integer)
    workload_inputs: Mapped[int] = mapped_column(Integer)
    raw_json: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        # The fleet report's one pass: per device, bundle and time bucket, every figure it sums
        # comes from this index alone (a covering index), never from the wide rows with their
        # raw payloads; a million reports read ~120 MB of index instead of ~2 GB of table. It
        # starts with (device_id, bundle_digest), so it also serves what the former index of
        # those two columns did. Databases created before it keep that index, and work without.
        Index("ix_reports_cells", *REPORT_CELL_COLUMNS),
        # Time ranges: the report's first and last window, and --since.
        Index("ix_reports_started", "started_at"),
    )


class StatusRow(Base):
    """A device's status as it changed (online/offline), with when the collector saw it."""

    __tablename__ = "statuses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    retained: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RejectedRow(Base):
    """A message that was not stored, why, and (the start of) what it carried."""

    __tablename__ = "rejected"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(1024))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    payload_bytes: Mapped[int] = mapped_column(Integer)
    truncated: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(1024))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
