"""The fleet report: figures from the collector's database, rendered as HTML, Markdown, CSV, JSON.

Installed with ``pip install 'edgekit[collector]'`` (Jinja2 and Plotly, imported when rendering).
"""

from edgekit.fleet_report.exports import write_rows
from edgekit.fleet_report.figures import FleetFigures, fleet_figures
from edgekit.fleet_report.render import render, write_report
from edgekit.fleet_report.summary import print_summary

__all__ = ["FleetFigures", "fleet_figures", "print_summary", "render", "write_report", "write_rows"]
