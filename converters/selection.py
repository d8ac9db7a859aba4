"""Choosing what to ship: one candidate per format for each sparsity tried (--auto-sparsity steps
back until the accuracy budget holds), then the host latency of the chosen ones."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from edgekit.converters.candidates import Baseline, Candidate, HostLatency, build_candidate
from edgekit.converters.formats import Exporter
from edgekit.converters.plan import BuildData, Plan
from edgekit.converters.source import Source
from edgekit.converters.validate import Reference, host_latency
from edgekit.datasets import LabelledData
from edgekit.progress import Progress
from edgekit.vocab import ModelFormat


@dataclass(frozen=True)
class Selection:
    """The candidates chosen (one per format, in the profile's order) and every group tried."""

    chosen: tuple[Candidate, ...]
    attempts: tuple[tuple[Candidate, ...], ...]  # one group per sparsity, in the order tried

    def tried(self, index: int) -> tuple[Candidate, ...]:
        """Every candidate tried for the ``index``-th format."""
        return tuple(group[index] for group in self.attempts)

    def measured(self, measure: Callable[[Candidate], Candidate]) -> Selection:
        """The same selection with each chosen candidate replaced by ``measure``'s result."""
        return dataclasses.replace(self, chosen=tuple(measure(c) for c in self.chosen))


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
    attempts: list[tuple[Candidate, ...]] = []
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
        attempts.append(group)
        if _within(group, plan):
            break
    chosen = attempts[-1]
    if not _within(chosen, plan):
        chosen = min(attempts, key=lambda group: max(c.drop_pt for c in group))
    return Selection(chosen=chosen, attempts=tuple(attempts))


def _within(group: tuple[Candidate, ...], plan: Plan) -> bool:
    return all(c.within(plan.budget_pt) for c in group)


def measured_on_host(
    candidate: Candidate, plan: Plan, data: LabelledData | None, *, progress: Progress
) -> Candidate:
    """The candidate with its one-sample latency on this machine (fp32 baseline and artifact)."""
    runs = plan.request.latency_runs
    if data is None or runs <= 0:
        return candidate
    sample = [x[0] for x in data.xs]
    threads, backend = plan.host_threads, candidate.backend
    with progress.task(f"Measuring host latency ({candidate.format.value})", total=2) as task:
        base = host_latency(candidate.baseline.content, sample, backend=backend, threads=threads,
                            runs=runs)  # fmt: skip
        task.advance()
        final = host_latency(candidate.content, sample, backend=backend, threads=threads,
                             runs=runs)  # fmt: skip
        task.advance()
    return dataclasses.replace(candidate, host=HostLatency(fp32=base, artifact=final))
