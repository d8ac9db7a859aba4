"""What a rollout will do, decided before anything is sent: its waves and its gate.

Waves are cumulative shares of the boards, in device id order: ``--canary 10%`` sends the first
tenth (at least one board) on its own, then ``--waves 25%,50%,100%`` brings the total to a
quarter, a half, everyone. A wave that would add no board is dropped; the last must be 100%.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Annotated, ClassVar

from pydantic import Field, ValidationError

from edgekit.errors import DeployError
from edgekit.values import Frozen

DEFAULT_CANARY = "10%"
DEFAULT_WAVES = "25%,50%,100%"


class GatePolicy(Frozen):
    """How each wave is judged, board by board (see :mod:`edgekit.rollout.gate`)."""

    # Reports needed from each board on the new bundle, and compared on its previous one.
    windows: Annotated[int, Field(ge=1, le=100)] = 3
    # The board's p50 on the new bundle may be at most this many times its p50 on the previous.
    p50_ratio: Annotated[float, Field(ge=1.0, le=100.0, allow_inf_nan=False)] = 1.5
    # Percentage points the board's accuracy may lose; None: the profile's max_accuracy_drop_pt.
    accuracy_drop_pt: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    # Boards of a wave that may fail (refuse, roll back, regress) before the wave fails.
    max_failures: Annotated[int, Field(ge=0)] = 0
    # How long a wave waits for its boards' windows before those missing count as failures.
    timeout_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600, allow_inf_nan=False)] = 600.0

    _KEYS: ClassVar[dict[str, str]] = {
        "windows": "windows",
        "p50-ratio": "p50_ratio",
        "accuracy-drop": "accuracy_drop_pt",
        "failures": "max_failures",
        "timeout": "timeout_s",
    }

    def describe(self) -> str:
        """The policy in words, with the windows it needs."""
        accuracy = (
            "the profile's" if self.accuracy_drop_pt is None else f"{self.accuracy_drop_pt:g} pt"
        )
        return (
            f"{self.windows} window(s) per board on each bundle; p50 at most {self.p50_ratio:g}x "
            f"the board's own on its previous bundle; accuracy within {accuracy} of the build's "
            f"and of its previous bundle's; at most {self.max_failures} failure(s); "
            f"{self.timeout_s:g} s per wave"
        )

    @classmethod
    def parse(cls, text: str | None) -> GatePolicy:
        """``windows=3,p50-ratio=1.5,accuracy-drop=1.0,failures=0,timeout=600`` (any subset)."""
        if not text:
            return cls()
        values: dict[str, str] = {}
        for item in text.split(","):
            key, sep, value = item.strip().partition("=")
            if not sep or key not in cls._KEYS:
                known = ", ".join(f"{k}=" for k in cls._KEYS)
                raise DeployError(f"--gate {item.strip()!r}: expected one of {known}")
            values[cls._KEYS[key]] = value.strip()
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = next(k for k, v in cls._KEYS.items() if v == first["loc"][0])
            raise DeployError(f"--gate {name}: {first['msg'].lower()}") from exc


@dataclass(frozen=True, slots=True)
class Wave:
    """One wave: its label and the boards it adds."""

    label: str
    devices: tuple[str, ...]


def share(text: str, *, option: str) -> float:
    """``"10%"`` -> 0.1; DeployError naming ``option`` for anything else."""
    value = text.strip()
    number = value.removesuffix("%")
    try:
        fraction = float(number) / 100.0
    except ValueError:
        fraction = math.nan
    if not value.endswith("%") or not 0.0 <= fraction <= 1.0:
        raise DeployError(f"{option} {text!r}: expected a share between 0% and 100%, like 25%")
    return fraction


def plan_waves(devices: list[str], *, canary: str, waves: str) -> list[Wave]:
    """The waves for ``devices`` (sorted by id), canary first."""
    ordered = sorted(devices)
    shares = [share(w, option="--waves") for w in waves.split(",") if w.strip()]
    if not shares or shares[-1] != 1.0:
        raise DeployError(f"--waves {waves!r}: the last wave must be 100%")
    if any(b < a for a, b in itertools.pairwise(shares)):
        raise DeployError(f"--waves {waves!r}: shares are cumulative and must grow")
    planned: list[Wave] = []
    taken = 0
    first = share(canary, option="--canary")
    if first > 0:
        taken = max(1, math.ceil(len(ordered) * first - 1e-9))
        planned.append(Wave("canary", tuple(ordered[:taken])))
    for fraction, label in zip(shares, (w.strip() for w in waves.split(",") if w.strip()),
                               strict=True):  # fmt: skip
        upto = max(taken, math.ceil(len(ordered) * fraction - 1e-9))
        if upto > taken:
            planned.append(Wave(label, tuple(ordered[taken:upto])))
            taken = upto
    return planned
