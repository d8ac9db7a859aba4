"""Render the fleet report as one self-contained HTML page, Markdown, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from edgekit._optional import require
from edgekit.errors import EdgekitError
from edgekit.fleet_report.compare import MIN_BOARDS, MIN_WINDOWS
from edgekit.fleet_report.drift_view import PSI_LARGE
from edgekit.fleet_report.figures import FleetFigures
from edgekit.fleet_report.hosts import SILENT_INTERVALS
from edgekit.fleet_report.page import page_data
from edgekit.vocab import ReportFormat

# Columns of the CSV: one row per device and bundle, carrying the device's status as well.
CSV_COLUMNS = (
    "device_id",
    "device_status",
    "bundle_id",
    "bundle_digest",
    "profile",
    "backend",
    "host",
    "reports",
    "last_report_at",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_p99_ms",
    "est_latency_ms",
    "measured_over_estimated",
    "accuracy_metric",
    "accuracy_on_device",
    "accuracy_fp32",
    "accuracy_build",
    "accuracy_build_samples",
    "delta_vs_fp32",
    "delta_vs_build",
    "model_bytes",
    "peak_rss_mb",
    "init_ms",
    "first_ms",
)
# Rows of the page's long tables (drift within noise, board selections): the rest is in JSON.
TABLE_ROWS = 100
_SOURCES = {"eval": "eval sample", "watch": "watched inputs"}


def render(figures: FleetFigures, fmt: ReportFormat, *, source: str) -> str:
    """The report as text; ``source`` names the database it was read from."""
    if fmt is ReportFormat.JSON:
        return json.dumps({"source": source, **figures.to_dict()}, indent=1) + "\n"
    if fmt is ReportFormat.CSV:
        return _csv(figures)
    env = _environment(html=fmt is ReportFormat.HTML)
    context: dict[str, Any] = {
        "f": figures,
        "source": source,
        "labels": {b.bundle_digest: b.label for b in figures.bundles},
        "silent_intervals": SILENT_INTERVALS,
        "min_windows": MIN_WINDOWS,
        "min_boards": MIN_BOARDS,
        "psi_large": PSI_LARGE,
        "drift_rows": TABLE_ROWS,
        "selection_rows": TABLE_ROWS,
    }
    if fmt is ReportFormat.HTML:
        context.update(
            css=_asset("report.css"),
            app_js=_asset("report.js"),
            plotly_js="" if figures.is_empty else plotly_js(),
            data="" if figures.is_empty else page_data(figures),
        )
        return env.get_template("report.html.j2").render(context)
    return env.get_template("report.md.j2").render(context)


def write_report(figures: FleetFigures, out: Path, fmt: ReportFormat, *, source: str) -> Path:
    """Render and write the report to ``out`` (atomically: a failed write leaves no half file)."""
    return write_text(out, render(figures, fmt, source=source))


def write_text(out: Path, text: str) -> Path:
    """Write ``text`` to ``out`` through a temporary file renamed into place."""
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EdgekitError(f"cannot write report to {out}: {exc.strerror or exc}") from exc
    return out


def plotly_js() -> str:
    """plotly.js itself, to inline in the page so it works offline."""
    offline = require("plotly.offline", extra="collector", package="plotly")
    return str(offline.get_plotlyjs())


def _asset(name: str) -> str:
    return resources.files("edgekit.fleet_report").joinpath("templates", name).read_text("utf-8")


def _csv(figures: FleetFigures) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in figures.device_bundles:
        writer.writerow([csv_cell(getattr(row, column)) for column in CSV_COLUMNS])
    return buffer.getvalue()


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: empty for None, ISO 8601 for times, 6 significant digits."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.6g}"
    if hasattr(value, "value"):  # enums
        return value.value
    return value


def _environment(*, html: bool) -> Any:
    jinja2 = require("jinja2", extra="collector", package="Jinja2")
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("edgekit.fleet_report", "templates"),
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )
    env.filters.update(num=_num, when=_when, md=_md, duration=_duration, source=_source,
                       error_pct=_error_pct, cell=_cell)  # fmt: skip
    return env


def _num(value: float | None, spec: str = ".3g", suffix: str = "") -> str:
    if value is None:
        return "-"
    if spec == ".3g":
        spec = ".3f" if abs(value) < 10 else ".2f" if abs(value) < 1000 else ".0f"
    return f"{value:{spec}}{suffix}"


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def _source(value: str) -> str:
    return _SOURCES.get(value, value)


def _error_pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{(ratio - 1) * 100:+.0f} %"


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return _when(value)
    if isinstance(value, float):
        return _num(value)
    return "-" if value is None else str(value)


def _md(value: object) -> str:
    # A pipe ends a Markdown table cell and a newline ends the row.
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")
