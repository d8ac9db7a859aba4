"""Rolling a rollout back by hand (``edgekit rollback``), whoever is running it."""

from __future__ import annotations

import time
from collections.abc import Callable

from edgekit.errors import DeployError
from edgekit.mqtt import BrokerSettings
from edgekit.rollout.controller import LeaseHeld, RolloutController
from edgekit.rollout.records import RolloutRecord
from edgekit.rollout.repository import RolloutDb
from edgekit.rollout.states import FINAL_STATES, RolloutState


def known_rollout(db: RolloutDb, rollout_id: str) -> RolloutRecord:
    """The rollout, or DeployError saying there is none by that id."""
    rollout = db.get(rollout_id)
    if rollout is None:
        raise DeployError(
            f"unknown rollout {rollout_id!r} in {db.display_url}; `edgekit rollouts` lists them"
        )
    return rollout


def roll_back(
    db: RolloutDb,
    broker: BrokerSettings,
    rollout_id: str,
    *,
    wait_s: float = 600.0,
    lease_ttl_s: float = 15.0,
    say: Callable[[str], None] = print,
) -> RolloutRecord:
    """Send every board the rollout reached back to its previous bundle; the rollout as it ends.

    If a controller runs the rollout, it is asked to (through the database) and this waits for
    it; otherwise this process takes the lease and does it.
    """
    rollout = known_rollout(db, rollout_id)
    if rollout.state in (RolloutState.ROLLED_BACK, RolloutState.FAILED):
        raise DeployError(
            f"rollout {rollout_id} is already {rollout.state.value.replace('_', ' ')}"
        )
    db.request_rollback(rollout_id)
    # A controller that died leaves its lease to expire: waiting a lease's length takes it over.
    controller = RolloutController(
        db, broker, rollout_id, lease_ttl_s=lease_ttl_s, wait_for_lease_s=lease_ttl_s + 2, say=say
    )
    try:
        return controller.run()
    except LeaseHeld as held:
        say(f"{held}; asked it to roll back, waiting")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        current = known_rollout(db, rollout_id)
        if current.state in FINAL_STATES and current.requested is None:
            return current
        time.sleep(1.0)
    raise DeployError(f"rollout {rollout_id} was not rolled back within {wait_s:g} s")
