"""The collector's counters."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CollectorStats:
    """Counts since the collector started."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    status_changes: int = 0
    rejected: int = 0
    acked: int = 0
    batches: int = 0
    store_failures: int = 0
    connections: int = 0

    def bump(self, **deltas: int) -> CollectorStats:
        """These counts with ``deltas`` added."""
        return dataclasses.replace(self, **{k: getattr(self, k) + v for k, v in deltas.items()})

    def __add__(self, other: CollectorStats) -> CollectorStats:
        names = (f.name for f in dataclasses.fields(self))
        return CollectorStats(**{n: getattr(self, n) + getattr(other, n) for n in names})
