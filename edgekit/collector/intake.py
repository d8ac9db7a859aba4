"""What one received MQTT message is: a report to store, a status change, or a rejection.

Pure functions and value objects, no database and no network, so every rule of the wire protocol
the collector enforces is testable on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from edgekit.errors import PayloadError
from edgekit.schema import STATUS_OFFLINE, STATUS_ONLINE, Report, parse_report, parse_topic
from edgekit.vocab import DeviceStatus

_STATUSES: dict[bytes, DeviceStatus] = {
    STATUS_ONLINE: DeviceStatus.ONLINE,
    STATUS_OFFLINE: DeviceStatus.OFFLINE,
}


@dataclass(frozen=True, slots=True)
class AcceptedReport:
    """A valid report, with when the collector received it."""

    report: Report
    received_at: datetime
    # The payload as it arrived, kept verbatim; None when the report was built in-process.
    raw: bytes | None = None
    topic: str = ""


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A device's online/offline status as published on its status topic."""

    device_id: str
    status: DeviceStatus
    retained: bool
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that is not stored as a report or status, and why."""

    topic: str
    payload: bytes
    reason: str
    received_at: datetime


Intake = AcceptedReport | StatusUpdate | Rejection


def classify(
    topic: str, payload: bytes, *, prefix: str, retained: bool, received_at: datetime
) -> Intake:
    """Apply the wire protocol to one message; never raises for anything a sender can do."""
    try:
        device_id, kind = parse_topic(topic, prefix)
        if kind == "status":
            return _status(device_id, payload, retained=retained, received_at=received_at)
        report = parse_report(payload)
    except PayloadError as exc:
        return Rejection(topic, payload, str(exc), received_at)
    if report.device_id != device_id:
        # Topic ACLs are per device; a payload claiming another device is not trusted.
        reason = (
            f"payload device_id {report.device_id!r} does not match topic device id {device_id!r}"
        )
        return Rejection(topic, payload, reason, received_at)
    return AcceptedReport(report, received_at, payload, topic)


def _status(device_id: str, payload: bytes, *, retained: bool, received_at: datetime) -> Intake:
    status = _STATUSES.get(payload)
    if status is None:
        shown = payload[:32].decode("utf-8", "replace")
        raise PayloadError(f"status payload {shown!r} is not 'online' or 'offline'")
    return StatusUpdate(device_id, status, retained, received_at)
