"""``edgekit report``: render the fleet report from the collector's database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli._output import err_console, warning_line
from edgekit.vocab import ReportFormat


def report(
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="File to write (the format follows its suffix).", show_default=False
        ),
    ],
    db: Annotated[
        str, typer.Option(envvar="EDGEKIT_DB", help="SQLAlchemy database URL the collector wrote.")
    ] = "sqlite:///edgekit.db",
    fmt: Annotated[
        ReportFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="html (one self-contained page), md, csv or json [default: from --out's suffix, "
            "else html].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write the fleet report: latency, accuracy vs build, estimated vs measured, sizes, status."""
    from edgekit.collector import Store
    from edgekit.fleet_report import fleet_figures, write_report

    chosen = fmt if fmt is not None else ReportFormat.for_path(out)
    with Store(db, create=False) as store:
        figures = fleet_figures(store.snapshot())
        source = store.display_url
    written = write_report(figures, out, chosen, source=source)
    if figures.is_empty:
        warning_line(f"{source} holds no reports yet; {written} says so")
    err_console().print(
        f"wrote {written} ({chosen.value}): {figures.report_count} reports, "
        f"{len(figures.devices)} devices, {len(figures.bundles)} bundles",
        highlight=False,
        soft_wrap=True,
    )
