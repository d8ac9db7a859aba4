"""The base of edgekit's value objects and the field types they share.

Every validated value (profile references, manifests, build reports, wire reports) is a frozen
pydantic model that rejects unknown keys: :class:`Frozen`. Imports pydantic only.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationInfo

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Frozen(BaseModel):
    """An immutable value that rejects unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _finite_in_json(value: float, info: ValidationInfo) -> float:
    if info.mode == "json" and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


# JSON has no NaN or infinity, yet pydantic reads the NaN/Infinity literals and overflowing numbers
# (1e400) as such floats, and to_json() writes them back as null: what was read would not read back.
# Only floats read from JSON are checked; one computed in process may be infinite (exact SQNR).
FiniteInJson = Annotated[float, AfterValidator(_finite_in_json)]
