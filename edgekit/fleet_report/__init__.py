"""The fleet report: figures from the collector's database, rendered as HTML, Markdown, CSV, JSON.

Installed with ``pip install 'edgekit[collector]'`` (Jinja2 and Plotly, imported when rendering).
"""

from edgekit.fleet_report.figures import FleetFigures, fleet_figures
from edgekit.fleet_report.render import render, write_report

__all__ = ["FleetFigures", "fleet_figures", "render", "write_report"]
