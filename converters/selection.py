"""The sparsity search: one candidate per format (the profile's scheme) for each sparsity tried
(--auto-sparsity steps back until the accuracy budget holds). The group kept, with the exporters
that made it, is what :mod:`edgekit.converters.explore` widens into every candidate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgekit.converters.candidates import Baseline, Candidate, build_candidate
from edgekit.converters.formats import Exporter
from edgekit.converters.plan import BuildData, Plan
from edgekit.converters.source import Source
from edgekit.converters.validate import Reference
from edgekit.progress import Progress
from edgekit.vocab import ModelFormat


@dataclass(frozen=True)
class Selection:
    """The candidates chosen (one per format, in the profile's order) and every group tried."""

    chosen: tuple[Candidate, ...]
    attempts: tuple[tuple[Candidate, ...], ...]  # one group per sparsity, in the order tried
    # The exporters (of the pruned model, when pruned) that made ``chosen``.
    exporters: Mapping[ModelFormat, Exporter]

    def tried(self, fmt: ModelFormat) -> tuple[Candidate, ...]:
        """Every sparsity's candidate of format ``fmt``, in the order tried."""
        return tuple(c for group in self.attempts for c in group if c.format is fmt)


def select(
    plan: Plan,
    source: Source,
    exporters: Mapping[ModelFormat, Exporter],
    baselines: Mapping[ModelFormat, Baseline],
    *,
    data: BuildData,
    reference: Reference,
    data_label: str,
    work_dir: Path,
    progress: Progress,
) -> Selection:
    """Build a group per sparsity until one is within the accuracy budget; else the group whose
    worst drop is smallest. ``exporters`` are the unpruned source's, per format."""
    attempts: list[tuple[tuple[Candidate, ...], Mapping[ModelFormat, Exporter]]] = []
    for sparsity in plan.sparsities():
        spec = plan.prune_at(sparsity)
        pruning = None
        made = exporters
        if spec.active:
            pruned, pruning = source.prune(spec, train=data.train, epochs=plan.request.epochs,
                                           work_dir=work_dir, progress=progress)  # fmt: skip
            made = {fmt: pruned.exporter(fmt, work_dir=work_dir) for fmt in exporters}
        group = tuple(
            build_candidate(plan, made[fmt], baselines[fmt], pruning=pruning, data=data,
                            reference=reference, data_label=data_label, progress=progress)
            for fmt in exporters
        )  # fmt: skip
        attempts.append((group, made))
        if _within(group, plan):
            break
    chosen, made = attempts[-1]
    if not _within(chosen, plan):
        chosen, made = min(attempts, key=lambda pair: max(c.drop_pt for c in pair[0]))
    return Selection(chosen=chosen, attempts=tuple(group for group, _ in attempts), exporters=made)


def _within(group: tuple[Candidate, ...], plan: Plan) -> bool:
    return all(c.within(plan.budget_pt) for c in group)
