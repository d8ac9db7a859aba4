"""``edgekit report``: the fleet report from the collector's database, and a summary here."""

from __future__ import annotations

import difflib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgekit.cli._output import err_console, out_console, warning_line
from edgekit.errors import EdgekitError
from edgekit.vocab import ReportFormat

if TYPE_CHECKING:
    from edgekit.collector import Store

# Time buckets of the trends: the fleet's, and one board's drill-down (finer: one board only).
FLEET_BUCKETS = 48
DEVICE_BUCKETS = 240
_AGO = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def report(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="File to write: .html (one self-contained page), .md, .csv or .json. Without "
            "it, only the summary is printed.",
            show_default=False,
        ),
    ] = None,
    db: Annotated[
        str, typer.Option(envvar="EDGEKIT_DB", help="SQLAlchemy database URL the collector wrote.")
    ] = "sqlite:///edgekit.db",
    fmt: Annotated[
        ReportFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="Format of --out [default: from its suffix].",
            show_default=False,
        ),
    ] = None,
    rows: Annotated[
        Path | None,
        typer.Option(
            help="Also write every report as one row: .csv, or .parquet (needs pyarrow).",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only reports started since then: a UTC date or time (2025-03-01, "
            "2025-03-01T12:00) or an age (30m, 24h, 7d).",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            help="Only this board: its drill-down, in finer time steps.", show_default=False
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(help="Only reports of bundles for this profile.", show_default=False),
    ] = None,
) -> None:
    """Report on the fleet: health, latency, accuracy, builds compared, drift, estimates."""
    from edgekit.collector import Store
    from edgekit.collector.snapshot import ReportFilter
    from edgekit.fleet_report import fleet_figures, print_summary, write_report, write_rows
    from edgekit.fleet_report.exports import check_rows_path

    chosen = None if out is None else _format(out, fmt)
    if rows is not None:
        check_rows_path(rows)
    filters = ReportFilter(since=_since(since), device=device, profile=profile)
    with Store(db, create=False) as store:
        snapshot = store.snapshot(
            filters=filters, buckets=DEVICE_BUCKETS if device else FLEET_BUCKETS
        )
        if device is not None and not snapshot.devices:
            _unknown_device(store, device)
        figures = fleet_figures(snapshot)
        source = store.display_url
        written_rows = None if rows is None else write_rows(store.report_rows(filters), rows)
    print_summary(figures, out_console())
    say = err_console()
    if out is not None and chosen is not None:
        written = write_report(figures, out, chosen, source=source)
        if figures.is_empty:
            warning_line(f"{source} holds no reports yet; {written} says so")
        say.print(f"wrote {written} ({chosen.value})", highlight=False, soft_wrap=True)
    if rows is not None:
        say.print(f"wrote {rows}: {written_rows} report rows", highlight=False, soft_wrap=True)
    if out is None and rows is None:
        say.print("the whole report: --out report.html (or .md, .csv, .json)", highlight=False)


def _format(out: Path, fmt: ReportFormat | None) -> ReportFormat:
    """The format to write ``out`` in; an unknown suffix (a .pdf) is refused, not filled with
    HTML."""
    suffix = out.suffix.lower().lstrip(".")
    if suffix == "pdf":
        raise EdgekitError(
            f"--out {out}: edgekit does not write PDF; write report.html and print it to PDF "
            "from a browser, or use .md, .csv or .json"
        )
    if fmt is not None:
        return fmt
    if suffix and ReportFormat.from_suffix(suffix) is None:
        raise EdgekitError(
            f"--out {out}: unknown report format {out.suffix!r}; use .html, .md, .csv or .json "
            "(or --format)"
        )
    return ReportFormat.for_path(out)


def _since(text: str | None) -> datetime | None:
    """``--since`` as a UTC time: an ISO date or time, or an age before now."""
    if text is None:
        return None
    age = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*", text)
    if age:
        return datetime.now(UTC) - timedelta(seconds=float(age[1]) * _AGO[age[2]])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise EdgekitError(
            f"--since {text!r}: expected a date or time (2025-03-01, 2025-03-01T12:00) "
            "or an age (30m, 24h, 7d)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _unknown_device(store: Store, device: str) -> None:
    """Refuse a ``--device`` the database has no reports of, naming the nearest ones."""
    known = store.device_ids()
    near = difflib.get_close_matches(device, known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(near)}?" if near else f" ({len(known)} boards stored)"
    raise EdgekitError(f"--device {device!r}: no reports from that board{hint}")
