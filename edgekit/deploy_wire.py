"""The deployment wire: the controller's commands to boards and the boards' progress events.

Topics, under the prefix reports use (default ``edgekit/v1``):

    <prefix>/<device_id>/deploy       retained, QoS 1, written only by the rollout controller:
                                      the board's desired state, one :class:`DeployCommand`
    <prefix>/<device_id>/deployment   QoS 1, the board's progress, one :class:`DeploymentEvent`
                                      per step (received ... healthy, failed or rolled_back)

Bundles travel over HTTP(S), addressed by digest, never through the broker: a command says where
the archive is, how large it is and what its SHA-256 must be. Both payloads are versioned,
size-limited and validated; :func:`classify_command` and :func:`classify_event` never raise for
anything a sender can put on the wire. Kept free of heavy imports: the board imports it.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from edgekit.errors import PayloadError
from edgekit.schema import DEFAULT_PREFIX, DeviceId, MessageId
from edgekit.values import Frozen, Sha256

# Far above a real command (~700 bytes) or event (~400 bytes); larger ones are not parsed.
MAX_COMMAND_BYTES = 16 * 1024
MAX_EVENT_BYTES = 8 * 1024
# A bundle a board downloads; the store refuses to hold a larger archive.
MAX_ARCHIVE_BYTES = 2 * 1024**3
MAX_URL_CHARS = 2048

RolloutId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")]
Reason = Annotated[str, StringConstraints(max_length=500)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class DeploymentPhase(StrEnum):
    """Where a board is with one command, in the order it gets there."""

    RECEIVED = "received"
    DOWNLOADING = "downloading"  # with a percent
    VERIFIED = "verified"  # digests, signature and fit checked; unpacked beside the old bundle
    ACTIVATED = "activated"  # the swap is done; the session restarts on the new bundle
    MEASURING = "measuring"  # the session runs; windows on the new bundle are being reported
    HEALTHY = "healthy"  # it ran the command's measurement windows
    FAILED = "failed"  # refused or could not be fetched; the board never left its bundle
    ROLLED_BACK = "rolled_back"  # it failed to load or run; the board is back on its previous


TERMINAL_PHASES = frozenset(
    {DeploymentPhase.HEALTHY, DeploymentPhase.FAILED, DeploymentPhase.ROLLED_BACK}
)


class DeployAction(StrEnum):
    """What a command asks for."""

    INSTALL = "install"  # fetch (unless held), verify, check the fit, swap, measure
    REVERT = "revert"  # go back to a bundle the board holds (the one it ran before)


def _bundle_url(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        # The command is retained on the broker: a secret in it would be handed to every
        # client allowed to read the topic, and kept.
        raise ValueError("must not carry credentials")
    return value


BundleUrl = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_URL_CHARS), AfterValidator(_bundle_url)
]


class FitBudgets(Frozen):
    """The profile's budgets a board checks a bundle against before it swaps."""

    max_model_mb: Positive  # flash taken by the largest artifact
    max_ram_mb: Positive  # the artifact's estimated working memory
    max_bundle_mb: Positive | None = None  # the whole unpacked bundle


class DeployCommand(Frozen):
    """A board's desired state: run this bundle (retained on its deploy topic)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_id: Literal["edgekit.deploy/1"] = Field(default="edgekit.deploy/1", alias="schema")
    rollout_id: RolloutId
    device_id: DeviceId
    action: DeployAction = DeployAction.INSTALL
    bundle_digest: Sha256  # SHA-256 of the bundle's manifest.json: what its reports will carry
    bundle_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    # The .tar.gz archive at ``url``; all three are needed to install, none to revert.
    url: BundleUrl | None = None
    archive_sha256: Sha256 | None = None
    archive_size: Annotated[int, Field(ge=1, le=MAX_ARCHIVE_BYTES)] | None = None
    # The board must check a signature: one without a trusted key refuses the bundle.
    signature_required: bool = False
    budgets: FitBudgets | None = None
    # Windows the board runs on the new bundle before it says it is healthy.
    measure_windows: Annotated[int, Field(ge=1, le=100)] = 3
    issued_at: AwareDatetime

    @model_validator(mode="after")
    def _install_says_where(self) -> DeployCommand:
        if self.action is DeployAction.INSTALL and None in (
            self.url,
            self.archive_sha256,
            self.archive_size,
        ):
            raise ValueError("an install command needs url, archive_sha256 and archive_size")
        return self

    def to_json(self) -> bytes:
        """The payload as published."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class DeploymentEvent(Frozen):
    """One step of a board's work on a command, as it reports it."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_id: Literal["edgekit.deployment/1"] = Field(
        default="edgekit.deployment/1", alias="schema"
    )
    message_id: MessageId
    device_id: DeviceId
    rollout_id: RolloutId
    bundle_digest: Sha256  # the bundle the command was about
    phase: DeploymentPhase
    at: AwareDatetime
    percent: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    reason: Reason = ""
    # The bundle the board runs once this step is done (None: not known yet).
    running_digest: Sha256 | None = None

    def to_json(self) -> bytes:
        """The payload as published."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """A message on a deployment topic that is not taken, and why."""

    topic: str
    reason: str


def deploy_topic(device_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The retained topic holding a board's desired state."""
    return f"{prefix}/{device_id}/deploy"


def deployment_topic(device_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The topic a board reports its deployment progress on."""
    return f"{prefix}/{device_id}/deployment"


def deployment_filter(prefix: str = DEFAULT_PREFIX) -> str:
    """The subscription for every board's deployment events."""
    return f"{prefix}/+/deployment"


def topic_device(topic: str, kind: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The device id of ``<prefix>/<device_id>/<kind>``; PayloadError for any other topic."""
    head = prefix.rstrip("/") + "/"
    parts = topic[len(head) :].split("/") if topic.startswith(head) else []
    if len(parts) != 2 or parts[1] != kind or not parts[0]:
        raise PayloadError(f"topic {topic[:200]!r} is not {head}<device_id>/{kind}")
    return parts[0]


def parse_command(payload: bytes) -> DeployCommand:
    """Validate a deploy command; PayloadError saying why it is not one."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise PayloadError(f"command of {len(payload)} bytes exceeds {MAX_COMMAND_BYTES}")
    try:
        return DeployCommand.model_validate_json(payload)
    except ValidationError as exc:
        raise PayloadError(_first_error(exc)) from exc


def parse_event(payload: bytes) -> DeploymentEvent:
    """Validate a deployment event; PayloadError saying why it is not one."""
    if len(payload) > MAX_EVENT_BYTES:
        raise PayloadError(f"event of {len(payload)} bytes exceeds {MAX_EVENT_BYTES}")
    try:
        return DeploymentEvent.model_validate_json(payload)
    except ValidationError as exc:
        raise PayloadError(_first_error(exc)) from exc


def classify_command(
    topic: str, payload: bytes, *, device_id: str, prefix: str = DEFAULT_PREFIX
) -> DeployCommand | RejectedMessage | None:
    """What a board makes of a message on its deploy topic: a command for it, a rejection, or
    None for an empty payload (a cleared retained state). Never raises."""
    if not payload:
        return None
    try:
        owner = topic_device(topic, "deploy", prefix)
        command = parse_command(payload)
    except PayloadError as exc:
        return RejectedMessage(topic, str(exc))
    if owner != device_id or command.device_id != device_id:
        reason = f"command for {command.device_id!r} on {topic!r} is not for {device_id!r}"
        return RejectedMessage(topic, reason)
    return command


def classify_event(
    topic: str, payload: bytes, *, prefix: str = DEFAULT_PREFIX
) -> DeploymentEvent | RejectedMessage:
    """What the controller makes of a message on a deployment topic. Never raises."""
    try:
        owner = topic_device(topic, "deployment", prefix)
        event = parse_event(payload)
    except PayloadError as exc:
        return RejectedMessage(topic, str(exc))
    if event.device_id != owner:
        # The ACL lets a board write only its own topic; a payload naming another is a forgery.
        reason = f"payload device_id {event.device_id!r} does not match topic device id {owner!r}"
        return RejectedMessage(topic, reason)
    return event


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "payload"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg'].removeprefix('Value error, ')}{more}"
