"""Wire schema shared by the runtime (which reports) and the collector (which stores).

Kept free of heavy imports: the board imports it on every report.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

NonNegative = Annotated[float, Field(ge=0)]


class LatencyStats(BaseModel):
    """Latency of timed runs in milliseconds, measured the way benchmark_model does."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: Annotated[int, Field(ge=1)]
    mean_ms: NonNegative
    std_ms: NonNegative
    min_ms: NonNegative
    p50_ms: NonNegative
    p90_ms: NonNegative
    p99_ms: NonNegative
    max_ms: NonNegative
    # Load (interpreter creation + tensor allocation) and the first, cold inference.
    init_ms: NonNegative | None = None
    first_ms: NonNegative | None = None
