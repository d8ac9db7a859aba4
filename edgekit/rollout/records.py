"""Rollout rows as read back: plain frozen values with their times in UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edgekit.collector.tables import as_utc
from edgekit.deploy_wire import FitBudgets
from edgekit.rollout.gate import WaveVerdict
from edgekit.rollout.plan import GatePolicy
from edgekit.rollout.states import RolloutState, TargetState, WaveState


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    """One rollout."""

    rollout_id: str
    bundle_digest: str
    bundle_id: str
    profile: str
    archive_sha256: str
    archive_size: int
    url: str
    signature_required: bool
    selector: str
    budgets: FitBudgets
    gate: GatePolicy
    state: RolloutState
    reason: str
    requested: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    owner: str | None
    lease_expires_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> RolloutRecord:
        """From a ``rollouts`` row."""
        return cls(
            rollout_id=row.rollout_id, bundle_digest=row.bundle_digest, bundle_id=row.bundle_id,
            profile=row.profile, archive_sha256=row.archive_sha256, archive_size=row.archive_size,
            url=row.url, signature_required=row.signature_required, selector=row.selector,
            budgets=FitBudgets.model_validate_json(row.budgets_json),
            gate=GatePolicy.model_validate_json(row.gate_json), state=RolloutState(row.state),
            reason=row.reason or "", requested=row.requested, created_at=as_utc(row.created_at),
            updated_at=as_utc(row.updated_at), finished_at=_utc(row.finished_at),
            owner=row.owner, lease_expires_at=_utc(row.lease_expires_at),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class WaveRecord:
    """One wave of a rollout."""

    index: int
    label: str
    size: int
    state: WaveState
    sent_at: datetime | None
    decided_at: datetime | None
    verdict: WaveVerdict | None

    @classmethod
    def of(cls, row: Any) -> WaveRecord:
        """From a ``rollout_waves`` row."""
        verdict = WaveVerdict.model_validate_json(row.verdict_json) if row.verdict_json else None
        return cls(row.wave, row.label, row.size, WaveState(row.state), _utc(row.sent_at),
                   _utc(row.decided_at), verdict)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TargetRecord:
    """One board of a rollout."""

    device_id: str
    wave: int
    from_digest: str
    from_bundle_id: str
    state: TargetState
    phase: str | None
    reason: str
    deferred: bool
    sent_at: datetime | None
    revert_sent_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> TargetRecord:
        """From a ``rollout_targets`` row."""
        return cls(
            row.device_id, row.wave, row.from_digest, row.from_bundle_id, TargetState(row.state),
            row.phase, row.reason or "", bool(row.deferred), _utc(row.sent_at),
            _utc(row.revert_sent_at),
        )  # fmt: skip
