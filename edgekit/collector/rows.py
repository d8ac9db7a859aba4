"""What each stored row holds, written once as column name to value.

The insert paths are generated from these definitions (see ``ingest``), never from a list of
values kept in the table's column order: a value is filed under the column its key names.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from sqlalchemy import Table

from edgekit.collector.intake import AcceptedReport, Rejection, StatusUpdate
from edgekit.collector.tables import REJECTED_PAYLOAD_KEEP, ReportRow
from edgekit.schema import HostFacts, Report

TimeEncoder = Callable[[datetime], Any]

_reports: Table = ReportRow.__table__  # type: ignore[assignment]
_ZERO = timedelta(0)

# Every reports column but the id the database assigns, in the table's order.
REPORT_COLUMNS: tuple[str, ...] = tuple(c.name for c in _reports.columns if c.name != "id")
# The host facts a report carries are device columns of the same names.
HOST_COLUMNS: tuple[str, ...] = tuple(HostFacts.model_fields)


def utc(value: datetime) -> datetime:
    """A timestamp for a DateTime column: SQLite keeps wall-clock digits and drops the offset,
    so every timestamp is stored in UTC."""
    return value.astimezone(UTC)


def sqlite_time(value: datetime) -> str:
    """A timestamp as exactly the text SQLAlchemy's SQLite DateTime type writes and reads back."""
    if value.utcoffset() != _ZERO:
        value = value.astimezone(UTC)
    # The UTC text without its "+00:00": what replace(tzinfo=None) would print, at less cost.
    return value.isoformat(" ", "microseconds")[:26]


def report_row(item: AcceptedReport, *, time: TimeEncoder = utc) -> dict[str, Any]:
    """The reports row of one accepted report; ``time`` encodes its timestamps."""
    r, lat, acc = item.report, item.report.latency, item.report.accuracy
    return {
        "message_id": r.message_id,
        "device_id": r.device_id,
        "bundle_digest": r.bundle_digest,
        "bundle_id": r.bundle_id,
        "profile": r.profile,
        "format": r.format,
        "backend": r.backend,
        "backend_version": r.backend_version,
        "threads": r.threads,
        "sequence": r.sequence,
        "started_at": time(r.started_at),
        "finished_at": time(r.finished_at),
        "received_at": time(item.received_at),
        "latency_count": lat.count,
        "mean_ms": lat.mean_ms,
        "std_ms": lat.std_ms,
        "min_ms": lat.min_ms,
        "p50_ms": lat.p50_ms,
        "p90_ms": lat.p90_ms,
        "p99_ms": lat.p99_ms,
        "max_ms": lat.max_ms,
        "init_ms": lat.init_ms,
        "first_ms": lat.first_ms,
        "accuracy_metric": acc.metric if acc else None,
        "accuracy_value": acc.value if acc else None,
        "accuracy_samples": acc.samples if acc else None,
        "peak_rss_mb": r.peak_rss_mb,
        "est_latency_ms": r.build.est_latency_ms,
        "dropped_reports": r.dropped_reports,
        "workload_inputs": r.workload_inputs,
        "raw_json": (item.raw if item.raw is not None else r.to_json()).decode(),
    }


# A report row's values in REPORT_COLUMNS order, picked by name (in C) for the driver's
# positional executemany: cheaper per row than named parameters, which the driver looks up one
# by one.
report_values: Callable[[dict[str, Any]], tuple[Any, ...]] = itemgetter(*REPORT_COLUMNS)


def bundle_row(report: Report, received_at: datetime) -> dict[str, Any]:
    """The bundles row a report describes, first seen at ``received_at``."""
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


def bundle_build_row(report: Report) -> dict[str, Any]:
    """The bundle_builds row a report describes: the build figures the bundles row predates."""
    build = report.build
    return {
        "bundle_digest": report.bundle_digest,
        "samples": build.samples,
        "variant": build.variant,
        "host_p50_ms": build.host_p50_ms,
        "host_p50_fp32_ms": build.host_p50_fp32_ms,
    }


def host_values(report: Report) -> dict[str, Any]:
    """The device columns a report's host facts fill (``HOST_COLUMNS``)."""
    return report.host.model_dump()


def status_row(item: StatusUpdate) -> dict[str, Any]:
    """The statuses row of one status change."""
    return {
        "device_id": item.device_id,
        "status": item.status,
        "retained": item.retained,
        "received_at": item.received_at,
    }


def rejected_row(item: Rejection) -> dict[str, Any]:
    """The rejected row of one message not stored, its payload cut to what diagnosis needs."""
    return {
        # PostgreSQL text cannot hold NUL; a reason may quote a sender's bytes.
        "topic": item.topic[:1024].replace("\x00", "\\x00"),
        "payload": item.payload[:REJECTED_PAYLOAD_KEEP],
        "payload_bytes": len(item.payload),
        "truncated": len(item.payload) > REJECTED_PAYLOAD_KEEP,
        "reason": item.reason[:1024].replace("\x00", "\\x00"),
        "received_at": item.received_at,
    }
