"""Render the fleet report as one self-contained HTML page, Markdown, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from edgekit._optional import require
from edgekit.errors import EdgekitError
from edgekit.fleet_report.figures import FleetFigures
from edgekit.fleet_report.plots import fleet_plots, plotly_js
from edgekit.vocab import ReportFormat

# Columns of the CSV: one row per device and bundle, carrying the device's status as well.
CSV_COLUMNS = (
    "device_id",
    "device_status",
    "bundle_id",
    "bundle_digest",
    "profile",
    "backend",
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
    "delta_vs_fp32",
    "delta_vs_build",
    "model_bytes",
    "peak_rss_mb",
)


def render(figures: FleetFigures, fmt: ReportFormat, *, source: str) -> str:
    """The report as text; ``source`` names the database it was read from."""
    if fmt is ReportFormat.JSON:
        return json.dumps({"source": source, **figures.to_dict()}, indent=2) + "\n"
    if fmt is ReportFormat.CSV:
        return _csv(figures)
    env = _environment(html=fmt is ReportFormat.HTML)
    if fmt is ReportFormat.HTML:
        template = env.get_template("report.html.j2")
        plots = fleet_plots(figures)
        return template.render(
            f=figures, plots=plots, source=source, plotly_js=plotly_js() if plots else ""
        )
    return env.get_template("report.md.j2").render(f=figures, source=source)


def write_report(figures: FleetFigures, out: Path, fmt: ReportFormat, *, source: str) -> Path:
    """Render and write the report to ``out`` (atomically: a failed write leaves no half file)."""
    text = render(figures, fmt, source=source)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EdgekitError(f"cannot write report to {out}: {exc.strerror or exc}") from exc
    return out


def _csv(figures: FleetFigures) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in figures.device_bundles:
        writer.writerow([_csv_cell(getattr(row, column)) for column in CSV_COLUMNS])
    return buffer.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.6g}"
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
    env.filters["num"] = _num
    env.filters["when"] = _when
    env.filters["md"] = _md
    return env


def _num(value: float | None, spec: str = ".3g", suffix: str = "") -> str:
    if value is None:
        return "-"
    if spec == ".3g":
        spec = ".3f" if abs(value) < 10 else ".2f" if abs(value) < 1000 else ".0f"
    return f"{value:{spec}}{suffix}"


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _md(value: object) -> str:
    # A pipe ends a Markdown table cell and a newline ends the row.
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")
