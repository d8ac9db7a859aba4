"""Rollouts in the collector's database: one row per rollout (with its lease), per wave (with its
gate figures), per target board, and per deployment event a board sent.

The tables are optional, like the drift tables: a database made before them reads as having no
rollouts, and a collector or a rollout controller adds them when it opens such a database.
Gate figures are kept as the JSON of :class:`edgekit.rollout.gate.WaveVerdict`, written once
when the wave is decided.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from edgekit.collector.tables import Base

_OPTIONAL = {"info": {"optional": True}}


class RolloutRow(Base):
    """A rollout of one bundle to a set of boards, and which controller owns it until when."""

    __tablename__ = "rollouts"
    __table_args__ = _OPTIONAL

    rollout_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    bundle_digest: Mapped[str] = mapped_column(String(64))
    bundle_id: Mapped[str] = mapped_column(String(200))
    profile: Mapped[str] = mapped_column(String(100))
    archive_sha256: Mapped[str] = mapped_column(String(64))
    archive_size: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(String(2048))
    signature_required: Mapped[bool] = mapped_column(Boolean)
    selector: Mapped[str] = mapped_column(String(300))  # what chose the boards, for display
    budgets_json: Mapped[str] = mapped_column(Text)  # the FitBudgets boards check
    gate_json: Mapped[str] = mapped_column(Text)  # the GatePolicy
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(String(1000), default="")
    # "rollback": someone asked (edgekit rollback) while another controller held the lease.
    requested: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WaveRow(Base):
    """One wave of a rollout, in the order they are sent."""

    __tablename__ = "rollout_waves"
    __table_args__ = _OPTIONAL

    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.rollout_id"), primary_key=True)
    wave: Mapped[int] = mapped_column(Integer, primary_key=True)  # canary first, from 0
    label: Mapped[str] = mapped_column(String(32))  # "canary", "25%", ...
    size: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verdict_json: Mapped[str | None] = mapped_column(Text)


class TargetRow(Base):
    """A board a rollout is for, the bundle it ran before, and where it is."""

    __tablename__ = "rollout_targets"
    __table_args__ = _OPTIONAL

    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.rollout_id"), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    wave: Mapped[int] = mapped_column(Integer)
    from_digest: Mapped[str] = mapped_column(String(64))
    from_bundle_id: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str | None] = mapped_column(String(16))  # the board's last event
    reason: Mapped[str] = mapped_column(String(1000), default="")
    deferred: Mapped[bool] = mapped_column(Boolean, default=False)  # offline when sent
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revert_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EventRow(Base):
    """A deployment event as a board sent it (message ids are unique: repeats are dropped)."""

    __tablename__ = "rollout_events"
    __table_args__ = (
        Index("ix_rollout_events_rollout_device", "rollout_id", "device_id"),
        _OPTIONAL,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    rollout_id: Mapped[str] = mapped_column(String(40))
    device_id: Mapped[str] = mapped_column(String(64))
    bundle_digest: Mapped[str] = mapped_column(String(64))
    phase: Mapped[str] = mapped_column(String(16))
    percent: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(1000), default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
