"""Candidates chosen on the boards: which won on each board and by how much, and per bundle how
many boards chose each candidate.

A board measures a bundle's candidates side by side and runs the fastest within budget (see
``edgekit.runtime.selection``). The runner-up is the fastest other candidate within budget that
ran; the margin is how much slower it was: its p50 over the winner's, minus one, in percent. A
winner that was not the fastest of them shows a negative margin.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from edgekit.collector.snapshot import BoardSelection
from edgekit.schema import CandidateResult


@dataclass(frozen=True, slots=True)
class BoardChoice:
    """One board's choice among a bundle's candidates, beside the runner-up."""

    device_id: str
    bundle_digest: str
    label: str
    chosen: str
    chosen_variant: str | None
    chosen_p50_ms: float | None
    runner_up: str | None  # None: no other candidate within budget ran
    runner_up_p50_ms: float | None
    margin_pct: float | None  # runner-up p50 / chosen p50 - 1, in percent
    measured_at: datetime
    candidates: tuple[CandidateResult, ...]


@dataclass(frozen=True, slots=True)
class ChoiceSummary:
    """How many boards chose one candidate of a bundle, and by what median margin."""

    bundle_digest: str
    label: str
    chosen: str
    boards: int
    median_margin_pct: float | None  # over the boards that had a runner-up
    text: str  # "3 boards chose model.onnx (median margin 80.0 %)"


def board_choices(
    selections: Iterable[BoardSelection], labels: Mapping[str, str]
) -> tuple[BoardChoice, ...]:
    """Each board's choice with its runner-up and margin, in the selections' order."""
    out = []
    for s in selections:
        sel = s.selection
        chosen = next((c for c in sel.candidates if c.artifact == sel.chosen), None)
        others = [
            c
            for c in sel.candidates
            if c is not chosen and c.within_budget and c.p50_ms is not None
        ]
        runner_up = min(others, key=lambda c: c.p50_ms or 0.0, default=None)
        won = chosen.p50_ms if chosen is not None else None
        lost = runner_up.p50_ms if runner_up is not None else None
        out.append(
            BoardChoice(
                device_id=s.device_id,
                bundle_digest=s.bundle_digest,
                label=labels.get(s.bundle_digest, s.bundle_digest[:7]),
                chosen=sel.chosen,
                chosen_variant=chosen.variant if chosen is not None else None,
                chosen_p50_ms=won,
                runner_up=runner_up.artifact if runner_up is not None else None,
                runner_up_p50_ms=lost,
                margin_pct=(lost / won - 1) * 100 if won and lost is not None else None,
                measured_at=sel.measured_at,
                candidates=sel.candidates,
            )
        )
    return tuple(out)


def choice_summaries(choices: Iterable[BoardChoice]) -> tuple[ChoiceSummary, ...]:
    """Per bundle and chosen candidate: the boards that chose it and their median margin; a
    bundle's most chosen candidate first."""
    groups: dict[tuple[str, str], list[BoardChoice]] = {}
    for c in choices:
        groups.setdefault((c.bundle_digest, c.chosen), []).append(c)
    out = []
    for (digest, chosen), mine in groups.items():
        margins = [c.margin_pct for c in mine if c.margin_pct is not None]
        median = statistics.median(margins) if margins else None
        boards = len(mine)
        if median is None:
            how = "no other candidate within budget ran"
        else:
            how = f"median margin {median:.1f} %"
        text = f"{boards} board{'' if boards == 1 else 's'} chose {chosen} ({how})"
        out.append(ChoiceSummary(digest, mine[0].label, chosen, boards, median, text))
    out.sort(key=lambda s: (s.label, -s.boards, s.chosen))
    return tuple(out)
