"""What the board's deployment agent must remember across crashes: the bundle on trial, and the
commands it has finished with (so a retained command delivered again is not carried out twice).

Kept in ``<deploy_dir>/state.json``, replaced durably (synced temporary file, rename). A file
that does not parse (damaged storage) is moved aside and the agent starts with an empty record;
the links in the deploy directory still say what runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, ValidationError

from edgekit.deploy_wire import DeployAction, DeploymentPhase, RolloutId
from edgekit.runtime.durable import replace_durably
from edgekit.values import Frozen, Sha256

STATE_NAME = "state.json"
# Commands remembered; a retained command older than these has long been superseded.
KEEP_HANDLED = 32


class Trial(Frozen):
    """A bundle activated by a command and not yet proven: the daemon rolls back from it."""

    rollout_id: RolloutId
    digest: Sha256
    previous: Sha256 | None
    action: DeployAction
    windows_needed: Annotated[int, Field(ge=1)]
    windows_done: Annotated[int, Field(ge=0)] = 0
    # Daemon starts on this bundle: one that crashes the process is abandoned after a few.
    starts: Annotated[int, Field(ge=0)] = 0


class Handled(Frozen):
    """A command the board has finished with, and how it ended."""

    rollout_id: RolloutId
    digest: Sha256
    action: DeployAction
    outcome: DeploymentPhase


class DeployState(Frozen):
    """The agent's durable record."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_id: Literal["edgekit.deploy-state/1"] = Field(
        default="edgekit.deploy-state/1", alias="schema"
    )
    trial: Trial | None = None
    # The command being worked on before its swap (download, unpack): kept across a restart.
    pending: Sha256 | None = None
    handled: tuple[Handled, ...] = ()

    def finished(self, rollout_id: str, digest: str, action: DeployAction) -> Handled | None:
        """How the command (rollout, bundle, action) ended, if it did."""
        return next(
            (h for h in self.handled
             if (h.rollout_id, h.digest, h.action) == (rollout_id, digest, action)),
            None,
        )  # fmt: skip

    def with_handled(self, entry: Handled) -> DeployState:
        """This record with ``entry`` added (the oldest forgotten past KEEP_HANDLED)."""
        kept = (*self.handled, entry)[-KEEP_HANDLED:]
        return self.model_copy(update={"handled": kept})


def load_state(root: Path) -> tuple[DeployState, Path | None]:
    """The record in ``root`` (empty when there is none) and where a damaged one was moved."""
    path = root / STATE_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return DeployState(), None
    try:
        return DeployState.model_validate_json(raw), None
    except ValidationError:
        aside = path.with_name(f"{STATE_NAME}.damaged-{time.strftime('%Y%m%dT%H%M%SZ')}")
        path.rename(aside)
        return DeployState(), aside


def save_state(root: Path, state: DeployState) -> None:
    """Replace the record durably."""
    replace_durably(root / STATE_NAME, (state.model_dump_json(by_alias=True) + "\n").encode())
