"""``edgekit rollouts``: the rollouts in the collector's database, with each wave's gate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from edgekit.cli._output import out_console
from edgekit.cli.deploy import Db

if TYPE_CHECKING:
    from edgekit.collector.rollout_queries import RolloutView, WaveView


def rollouts(
    db: Db = "sqlite:///edgekit.db",
    limit: Annotated[int, typer.Option(min=1, help="How many of the latest rollouts.")] = 20,
) -> None:
    """List rollouts, newest first: state, boards, and each wave's gate figures."""
    from edgekit.collector.engine import open_database
    from edgekit.collector.rollout_queries import rollout_timeline

    database = open_database(db, create=False, timeout_s=10.0)
    try:
        with database.guard("reading rollouts"), database.engine.connect() as conn:
            views = rollout_timeline(conn, limit=limit)
    finally:
        database.close()
    console = out_console()
    if not views:
        console.print(f"no rollouts in {database.display_url}", highlight=False, markup=False)
    for view in views:
        console.print(_rollout_line(view), highlight=False, soft_wrap=True, markup=False)
        for wave in view.waves:
            console.print(f"  {_wave_line(wave)}", highlight=False, soft_wrap=True, markup=False)


def _rollout_line(view: RolloutView) -> str:
    states = ", ".join(f"{n} {state}" for state, n in view.target_states.items())
    reason = f"; {view.reason}" if view.reason else ""
    return (
        f"{view.rollout_id}  {view.state:<12} {view.bundle_id} ({view.profile}) {view.selector}, "
        f"{view.targets} board(s): {states}; created {view.created_at:%Y-%m-%d %H:%M:%S}Z{reason}"
    )


def _wave_line(wave: WaveView) -> str:
    head = f"wave {wave.label:<7} {wave.size:>3} board(s) {wave.state:<8}"
    if wave.verdict is None:
        return head
    ratios = [b.p50_ratio for b in wave.boards if b.p50_ratio is not None]
    accuracy = [b.accuracy_new for b in wave.boards if b.accuracy_new is not None]
    figures = (
        f"p50 ratio {min(ratios):.2f}-{max(ratios):.2f} (limit {wave.verdict.p50_ratio_limit:g})"
        if ratios
        else "no p50 ratio"
    )
    if accuracy:
        figures += f", accuracy {min(accuracy):.1f}-{max(accuracy):.1f}%"
    return f"{head} {figures}, {wave.verdict.windows} window(s) each: {wave.verdict.reason}"
