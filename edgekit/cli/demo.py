"""``edgekit demo``: build, deploy to simulated boards, collect and report, on one machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli._output import RichProgress, err_console, native_stderr_diverted, out_console


def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for everything the demo makes.")
    ] = Path("edgekit-demo"),
    devices: Annotated[int, typer.Option(min=1, max=20, help="Simulated boards per profile.")] = 2,
    reports: Annotated[int, typer.Option(min=1, max=100, help="Reports per board.")] = 4,
    interval: Annotated[
        float, typer.Option(min=0.0, help="Seconds between a board's windows.")
    ] = 1.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train a small CNN on scikit-learn's digits, build it for rpi4 and jetson-nano, run
    simulated boards (edgekit daemons) against an embedded broker and a collector, and write the
    fleet report. Needs edgekit[all]; nothing is downloaded."""
    from edgekit.demo import run_demo
    from edgekit.fleet_report import print_summary

    console = err_console()

    def say(message: str) -> None:
        console.print(message, markup=False, highlight=False, soft_wrap=True)

    with native_stderr_diverted():
        result = run_demo(
            out,
            devices_per_profile=devices,
            reports=reports,
            interval_s=interval,
            progress=RichProgress(enabled=not quiet),
            say=say,
        )
    say(
        f"{result.devices} boards sent {result.reports_sent} reports; the collector stored "
        f"{result.reports_stored} in {result.database}"
    )
    print_summary(result.figures, out_console())
    typer.echo(f"report: {result.report.resolve()}")
