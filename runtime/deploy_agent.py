"""The board's deployment agent: carries out the commands of its deploy topic, step by step.

An install goes ``received`` -> ``downloading`` (percent; resumed after a crash) -> ``verified``
(archive size and SHA-256, manifest digest, the fit against the profile's budgets and the free
disk, every file and the signature) -> ``activated`` (the swap of :mod:`bundle_slots`) ->
``measuring`` (the daemon's session runs on it) -> ``healthy`` after the command's windows.
Refused before the swap: ``failed``, the board never left its bundle. Failing to load or run
after it, or keeping the daemon from starting a few times: ``rolled_back``, with the reason.

Every event is put in the daemon's outbox before it is published, so none is lost. The bundle
on trial, the command being worked on and the commands finished with are in ``state.json``
(:mod:`deploy_state`), written before each swap, so a retained command delivered again after a
reconnect or a restart is carried out once and a crash mid-trial is still rolled back.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from edgekit.bundle import verify_bundle
from edgekit.deploy_wire import (
    DeployAction,
    DeployCommand,
    DeploymentEvent,
    DeploymentPhase,
    deployment_topic,
)
from edgekit.errors import BundleError, BundleIntegrityError, DeployError, EdgekitError
from edgekit.manifest import Manifest
from edgekit.runtime.bundle_fetch import FetchInterrupted, fetch_archive
from edgekit.runtime.bundle_fit import (
    check_disk_for,
    check_fit,
    check_unpacked,
    manifest_in_archive,
)
from edgekit.runtime.bundle_slots import CURRENT, BundleSlots, Step
from edgekit.runtime.deploy_state import DeployState, Handled, Trial, load_state, save_state
from edgekit.runtime.outbox import Outbox
from edgekit.schema import utc_now

# Starts of the daemon on a bundle on trial before it is given up (it crashed the process).
MAX_TRIAL_STARTS = 3
# Download progress is reported at these steps, not per chunk.
PROGRESS_STEP_PCT = 25


def _no_step(_name: str) -> None:
    return None


class DeployAgent:
    """Deployment on one board: the deploy directory, its record, and the events it sends."""

    def __init__(
        self,
        root: Path,
        *,
        device_id: str,
        outbox: Outbox,
        prefix: str,
        trust_key: Path | None = None,
        store_ca_file: Path | None = None,
        say: Callable[[str], None] = print,
        stop: Callable[[], bool] = lambda: False,
        on_step: Step = _no_step,
    ) -> None:
        self.slots = BundleSlots(root)
        self.root = root
        self.device_id = device_id
        self.outbox = outbox
        self.topic = deployment_topic(device_id, prefix)
        self.trust_key = trust_key
        self.store_ca_file = store_ca_file
        self._say = say
        self._stop = stop
        self._on_step = on_step
        self._publish: Callable[[str], object] = lambda _message_id: False
        root.mkdir(parents=True, exist_ok=True)
        self.state, aside = load_state(root)
        if aside is not None:
            say(f"deployment record was damaged; kept it as {aside}, started afresh")

    def attach(self, publish: Callable[[str], object]) -> None:
        """Publish events through ``publish(message_id)`` (the reporter's) from now on."""
        self._publish = publish

    @property
    def on_trial(self) -> bool:
        """Whether the bundle running was activated by a command and is not yet proven."""
        return self.state.trial is not None

    def start(self, configured: Path) -> Path:
        """The bundle the daemon should open: the current one (``configured`` is copied in on
        the first start); a trial the daemon kept failing to start on is rolled back first."""
        self.slots.recover(keep=[self.state.pending] if self.state.pending else [])
        if self.slots.digest(CURRENT) is None:
            self.slots.activate(self.slots.adopt(configured, trust_key=self.trust_key))
        trial = self.state.trial
        current = self.slots.digest(CURRENT)
        if trial is not None and current != trial.digest:
            self._save(trial=None)  # power cut before the swap: the old bundle still runs
        elif trial is not None and trial.starts >= MAX_TRIAL_STARTS:
            return self._roll_back(f"the daemon stopped {trial.starts} times while starting on it")
        elif trial is not None:
            self._save(trial=trial.model_copy(update={"starts": trial.starts + 1}))
        return self.slots.path(self.slots.digest(CURRENT) or "")

    def opened(self) -> None:
        """The daemon's session runs on the current bundle."""
        trial = self.state.trial
        if trial is not None:
            self._emit(trial.rollout_id, trial.digest, DeploymentPhase.MEASURING,
                       running=trial.digest)  # fmt: skip

    def failed(self, exc: BaseException) -> Path | None:
        """The current bundle failed to load or run: the previous bundle's folder to open when
        it was on trial (rolled back), None when it was not (the caller raises)."""
        if self.state.trial is None:
            return None
        return self._roll_back(f"{type(exc).__name__}: {exc}")

    def window_done(self) -> None:
        """One more window reported from the current bundle; healthy after enough of them."""
        trial = self.state.trial
        if trial is None:
            return
        done = trial.windows_done + 1
        if done < trial.windows_needed:
            self._save(trial=trial.model_copy(update={"windows_done": done}))
            return
        self._finish(trial, DeploymentPhase.HEALTHY)
        self._emit(trial.rollout_id, trial.digest, DeploymentPhase.HEALTHY,
                   reason=f"{done} window(s) reported", running=trial.digest)  # fmt: skip

    def handle(self, command: DeployCommand) -> Path | None:
        """Carry out ``command``; the folder of the bundle to open when it swapped, else None."""
        key = (command.rollout_id, command.bundle_digest, command.action)
        trial = self.state.trial
        if self.state.finished(*key) is not None or (
            trial is not None and (trial.rollout_id, trial.digest, trial.action) == key
        ):
            return None  # a retained command delivered again
        self._emit(command.rollout_id, command.bundle_digest, DeploymentPhase.RECEIVED)
        try:
            self._prepare(command)
        except FetchInterrupted as exc:
            self._say(f"deployment {command.rollout_id}: {exc}; it resumes when seen again")
            return None
        except EdgekitError as exc:
            self._save(pending=None)
            self._record(command, DeploymentPhase.FAILED)
            self._emit(command.rollout_id, command.bundle_digest, DeploymentPhase.FAILED,
                       reason=str(exc), running=self.slots.digest(CURRENT))  # fmt: skip
            return None
        return self._swap(command)

    def _prepare(self, command: DeployCommand) -> None:
        digest = command.bundle_digest
        if command.signature_required and self.trust_key is None:
            raise DeployError(
                "the rollout requires a signed bundle and this board has no trusted key "
                "(daemon --trust-key)"
            )
        if self.slots.holds(digest):
            verify_bundle(self.slots.path(digest), trust_key=self.trust_key)
            return
        if command.action is DeployAction.REVERT or command.url is None:
            raise DeployError(
                f"cannot go back to bundle {digest[:16]}...: this board no longer holds it"
            )
        if self.state.pending != digest:
            self._save(pending=digest)
        self._fetch(command)
        self._emit(command.rollout_id, digest, DeploymentPhase.VERIFIED,
                   running=self.slots.digest(CURRENT))  # fmt: skip

    def _fetch(self, command: DeployCommand) -> None:
        digest = command.bundle_digest
        url, sha256, size = command.url, command.archive_sha256, command.archive_size
        if url is None or sha256 is None or size is None:  # DeployCommand refuses such installs
            raise DeployError("the command does not say where the bundle is")
        part = self.slots.part(digest)
        check_disk_for(size - (part.stat().st_size if part.is_file() else 0), disk=self.root)
        reported = [-1]

        def progress(done: int, total: int) -> None:
            step = int(100 * done / total) // PROGRESS_STEP_PCT * PROGRESS_STEP_PCT
            if step > reported[0]:
                reported[0] = step
                self._emit(command.rollout_id, digest, DeploymentPhase.DOWNLOADING,
                           percent=float(step))  # fmt: skip

        archive = fetch_archive(url, part, size=size, sha256=sha256, ca_file=self.store_ca_file,
                                stop=self._stop, on_progress=progress)  # fmt: skip
        self._on_step("downloaded")
        try:
            manifest = _manifest_of(archive, digest)
            check_fit(manifest, command.budgets, disk=self.root)
            self.slots.install(archive, digest, trust_key=self.trust_key, on_step=self._on_step)
        finally:
            archive.unlink(missing_ok=True)  # refused or installed, it is not needed again

    def _swap(self, command: DeployCommand) -> Path | None:
        digest = command.bundle_digest
        running = self.slots.digest(CURRENT)
        if running == digest:
            self._record(command, DeploymentPhase.HEALTHY)
            self._emit(command.rollout_id, digest, DeploymentPhase.HEALTHY,
                       reason="already running this bundle", running=digest)  # fmt: skip
            return None
        trial = Trial(rollout_id=command.rollout_id, digest=digest, previous=running,
                      action=command.action, windows_needed=command.measure_windows)  # fmt: skip
        # Written before the links move: whatever happens next, a restart knows the trial.
        self._save(trial=trial, pending=None)
        self._on_step("trial-recorded")
        self.slots.activate(digest, on_step=self._on_step)
        self._emit(command.rollout_id, digest, DeploymentPhase.ACTIVATED, running=digest)
        return self.slots.path(digest)

    def _roll_back(self, reason: str) -> Path:
        trial = self.state.trial
        assert trial is not None
        back = trial.previous
        if back is None or not self.slots.holds(back):
            raise BundleError(f"bundle {trial.digest[:16]}... failed ({reason}) and there is no "
                              "previous bundle to go back to")  # fmt: skip
        self.slots.activate(back)
        self._finish(trial, DeploymentPhase.ROLLED_BACK)
        self._emit(trial.rollout_id, trial.digest, DeploymentPhase.ROLLED_BACK, reason=reason,
                   running=back)  # fmt: skip
        return self.slots.path(back)

    def _finish(self, trial: Trial, outcome: DeploymentPhase) -> None:
        entry = Handled(rollout_id=trial.rollout_id, digest=trial.digest, action=trial.action,
                        outcome=outcome)  # fmt: skip
        self._write(self.state.with_handled(entry).model_copy(update={"trial": None}))

    def _record(self, command: DeployCommand, outcome: DeploymentPhase) -> None:
        entry = Handled(rollout_id=command.rollout_id, digest=command.bundle_digest,
                        action=command.action, outcome=outcome)  # fmt: skip
        self._write(self.state.with_handled(entry))

    def _save(self, **changes: object) -> None:
        self._write(self.state.model_copy(update=changes))

    def _write(self, state: DeployState) -> None:
        save_state(self.root, state)
        self.state = state

    def _emit(
        self,
        rollout_id: str,
        digest: str,
        phase: DeploymentPhase,
        *,
        percent: float | None = None,
        reason: str = "",
        running: str | None = None,
    ) -> None:
        event = DeploymentEvent(
            message_id=uuid.uuid4().hex, device_id=self.device_id, rollout_id=rollout_id,
            bundle_digest=digest, phase=phase, at=utc_now(), percent=percent,
            reason=reason[:500], running_digest=running,
        )  # fmt: skip
        self.outbox.put(event.message_id, self.topic, event.to_json())
        self._publish(event.message_id)
        shown = f" {percent:.0f}%" if percent is not None else ""
        why = f": {reason}" if reason else ""
        self._say(f"deployment {rollout_id} of {digest[:12]}: {phase}{shown}{why}")


def _manifest_of(archive: Path, digest: str) -> Manifest:
    """The archive's manifest, read before anything is unpacked, checked against ``digest``
    and against what the archive would unpack to."""
    raw, unpacked = manifest_in_archive(archive)
    if hashlib.sha256(raw).hexdigest() != digest:
        raise BundleIntegrityError(
            f"the archive's manifest.json is not the bundle {digest[:16]}... that was announced"
        )
    try:
        manifest = Manifest.model_validate_json(raw)
    except ValidationError as exc:
        raise BundleError(
            f"the archive's manifest.json is not valid: {exc.error_count()} error(s)"
        ) from exc
    check_unpacked(manifest, len(raw), unpacked)
    return manifest
