"""Who the boards are: their health, and whether their hosts are what their profiles claim.

A board that stopped and said so (``offline``) is not a fault; one that says it is online but has
not reported for several of its own intervals is (``silent``). A report whose host machine is not
the architecture of its profile (an x86_64 VM running an ``rpi4`` bundle) measured that host, not
the board: it is marked ``simulated`` (x86_64 standing in for another architecture) or
``mismatched``, and left out of the estimate errors.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache

from edgekit.errors import ProfileError


class Health(StrEnum):
    """A board's state as the report shows it."""

    REPORTING = "reporting"
    OFFLINE = "offline"
    SILENT = "silent"
    UNKNOWN = "unknown"


class HostMatch(StrEnum):
    """Whether the host that measured is the profile's kind of board."""

    MATCH = "match"
    SIMULATED = "simulated"
    MISMATCHED = "mismatched"
    UNKNOWN = "unknown"


# A board is silent after this many of its own report intervals without a report (and at least
# SILENT_AFTER_MIN), so a slow board is not called silent between two windows.
SILENT_INTERVALS = 3
SILENT_AFTER_MIN = timedelta(minutes=5)
_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "armv8": "aarch64"}


def health(
    status: str | None,
    last_report: datetime | None,
    interval: timedelta | None,
    *,
    now: datetime,
) -> Health:
    """The health of a board whose last status is ``status`` and last report ``last_report``."""
    if status == "offline":
        return Health.OFFLINE
    if last_report is None:
        return Health.UNKNOWN if status is None else Health.REPORTING
    allowed = max(SILENT_AFTER_MIN, (interval or timedelta(0)) * SILENT_INTERVALS)
    if now - last_report > allowed:
        return Health.SILENT
    return Health.REPORTING if status == "online" else Health.UNKNOWN


def host_match(machine: str | None, profile: str) -> HostMatch:
    """Whether a host of ``machine`` (Python's platform.machine()) is a ``profile`` board."""
    arch = profile_arch(profile)
    if machine is None or arch is None:
        return HostMatch.UNKNOWN
    have, want = _normal(machine), _normal(arch)
    if have == want or (have.startswith("armv7") and want.startswith("armv7")):
        return HostMatch.MATCH
    return HostMatch.SIMULATED if have == "x86_64" else HostMatch.MISMATCHED


@cache
def profile_arch(profile: str) -> str | None:
    """The architecture a shipped profile names (None for a profile edgekit does not ship)."""
    from edgekit.profiles import load_profile, shipped_profiles

    if profile not in shipped_profiles():
        return None
    try:
        return load_profile(profile).hardware.arch
    except ProfileError:
        return None


def _normal(machine: str) -> str:
    lowered = machine.strip().lower()
    return _ALIASES.get(lowered, lowered)
