"""The states a rollout, its waves, its boards and their gate verdicts go through."""

from __future__ import annotations

from enum import StrEnum


class RolloutState(StrEnum):
    """Where a rollout is; the last four are final (``succeeded`` until rolled back by hand)."""

    RUNNING = "running"  # waves are being sent and gated
    ROLLING_BACK = "rolling_back"  # a gate failed, or someone asked: boards are sent back
    SUCCEEDED = "succeeded"  # every wave passed its gate
    ROLLED_BACK = "rolled_back"  # boards that ran the bundle are back on their previous one
    FAILED = "failed"  # no board ever ran it (every one refused it); they never left theirs


FINAL_STATES = frozenset({RolloutState.SUCCEEDED, RolloutState.ROLLED_BACK, RolloutState.FAILED})


class WaveState(StrEnum):
    """Where one wave is."""

    PENDING = "pending"
    SENT = "sent"  # its boards have the command; the gate waits for their windows
    PASSED = "passed"
    FAILED = "failed"


class TargetState(StrEnum):
    """Where one board of a rollout is: the board's own phases between sent and the end."""

    PENDING = "pending"
    SENT = "sent"
    RECEIVED = "received"
    DOWNLOADING = "downloading"
    VERIFIED = "verified"
    ACTIVATED = "activated"
    MEASURING = "measuring"
    HEALTHY = "healthy"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"  # by itself: the bundle failed to load or run
    REVERTING = "reverting"  # sent back to its previous bundle by the controller
    REVERTED = "reverted"  # reporting from its previous bundle again


class Verdict(StrEnum):
    """A board's verdict in a wave's gate."""

    PASS = "pass"
    FAIL = "fail"
    WAITING = "waiting"  # not enough windows from the new bundle yet
    DEFERRED = "deferred"  # offline when sent: not judged, gets the bundle when it returns
