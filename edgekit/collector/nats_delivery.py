"""What one fetched set of JetStream messages becomes: which are committed together, which alone.

A message delivered for the first time goes into one transaction with the others. A redelivered
one is committed alone, so that a message that makes its collector fail (a crash, not a bad
payload: those are rejections already) takes no batch-mate down with it again. The ones it was
fetched with come back with it, one delivery more each time; taking them in stream order, and
the other way round on the next delivery, puts every batch-mate before the failing message in
one of two consecutive rounds, so they are acknowledged before it fails again. From
``poison_after`` deliveries on (at least 4, so a batch-mate never gets there), a message is
stored as a rejection, verbatim and unparsed, and terminated: never redelivered forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar


class Delivered(Protocol):
    """What a plan needs of a message: how often it was delivered and its stream sequence."""

    @property
    def deliveries(self) -> int: ...

    @property
    def sequence(self) -> int: ...


M = TypeVar("M", bound=Delivered)


@dataclass(frozen=True, slots=True)
class DeliveryPlan(Generic[M]):
    """A fetched set of messages, in the order they are handled."""

    batch: list[M] = field(default_factory=list)  # first deliveries: one transaction
    alone: list[M] = field(default_factory=list)  # redeliveries: one transaction each
    poison: list[M] = field(default_factory=list)  # stored as rejections, then terminated

    @classmethod
    def of(cls, messages: list[M], *, poison_after: int) -> DeliveryPlan[M]:
        """Split ``messages`` by how often each has been delivered."""
        batch = [m for m in messages if m.deliveries <= 1]
        alone = [m for m in messages if 1 < m.deliveries < poison_after]
        poison = [m for m in messages if m.deliveries >= poison_after]
        # Fewest deliveries first; then by sequence, ascending on even, descending on odd counts.
        alone.sort(key=lambda m: (m.deliveries, m.sequence * (-1) ** m.deliveries))
        return cls(batch, alone, poison)


def poison_reason(deliveries: int) -> str:
    """The rejection reason of a message given up on after ``deliveries`` deliveries."""
    return (
        f"delivered {deliveries} times without being stored (a collector failed on it each "
        "time); kept verbatim here and not delivered again"
    )
