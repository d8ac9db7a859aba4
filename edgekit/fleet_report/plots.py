"""Plotly figures of the fleet report, as HTML fragments that need plotly.js on the page once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgekit._optional import require
from edgekit.fleet_report.figures import FleetFigures

_CONFIG = {"displaylogo": False, "responsive": True}
_LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "height": 380,
    "margin": {"l": 60, "r": 20, "t": 50, "b": 110},
    "legend": {"orientation": "h", "y": 1.12},
}


@dataclass(frozen=True, slots=True)
class Plot:
    """One plot: an anchor id, a title, and its HTML fragment."""

    id: str
    title: str
    html: str


def fleet_plots(figures: FleetFigures) -> list[Plot]:
    """The report's plots; none for an empty fleet."""
    if not figures.device_bundles and not figures.devices:
        return []
    go = require("plotly.graph_objects", extra="collector", package="plotly")
    plots = (
        _latency(go, figures),
        _accuracy(go, figures),
        _closed_loop(go, figures),
        _model_size(go, figures),
        _device_reports(go, figures),
    )
    return [plot for plot in plots if plot is not None]


def _latency(go: Any, figures: FleetFigures) -> Plot | None:
    rows = figures.device_bundles
    if not rows:
        return None
    labels = [r.label for r in rows]
    latency = go.Figure(
        [
            go.Bar(name=name, x=labels, y=[getattr(r, attr) for r in rows])
            for name, attr in (("p50", "p50_ms"), ("p90", "p90_ms"), ("p99", "p99_ms"))
        ]
    )
    latency.update_layout(barmode="group", yaxis_title="ms (mean over report windows)")
    return _plot(latency, "latency", "Latency percentiles per device and bundle")


def _accuracy(go: Any, figures: FleetFigures) -> Plot | None:
    accurate = [r for r in figures.device_bundles if r.accuracy_on_device is not None]
    if not accurate:
        return None
    names = [r.label for r in accurate]
    accuracy = go.Figure(
        [
            go.Bar(name="on device", x=names, y=[r.accuracy_on_device for r in accurate]),
            go.Bar(name="fp32 (build)", x=names, y=[r.accuracy_fp32 for r in accurate]),
            go.Bar(name="quantized (build)", x=names, y=[r.accuracy_build for r in accurate]),
        ]
    )
    metrics = sorted({r.accuracy_metric or "" for r in accurate})
    values = [
        v
        for r in accurate
        for v in (r.accuracy_on_device, r.accuracy_fp32, r.accuracy_build)
        if v is not None
    ]
    # Differences of a point or two are the story; an axis from zero flattens them.
    span = max(values) - min(values)
    low, high = min(values) - max(span, 1.0), max(values) + max(span, 1.0) * 0.3
    accuracy.update_layout(
        barmode="group", yaxis_title=" / ".join(metrics), yaxis_range=[low, high]
    )
    return _plot(accuracy, "accuracy", "Accuracy on device vs fp32 and build")


def _closed_loop(go: Any, figures: FleetFigures) -> Plot | None:
    rows = figures.device_bundles
    if not rows:
        return None
    loop = go.Figure()
    for profile in figures.profiles:
        mine = [r for r in rows if r.profile == profile.profile and r.est_latency_ms is not None]
        loop.add_trace(
            go.Scatter(
                name=profile.profile,
                mode="markers",
                x=[r.est_latency_ms for r in mine],
                y=[r.p50_ms for r in mine],
                text=[r.label for r in mine],
                marker={"size": 11},
            )
        )
    top = max(max(r.est_latency_ms or 0.0, r.p50_ms) for r in rows) * 1.1
    loop.add_trace(
        go.Scatter(
            name="measured = estimated",
            mode="lines",
            x=[0, top],
            y=[0, top],
            line={"dash": "dot", "color": "grey"},
        )
    )
    loop.update_layout(
        xaxis_title="estimated at build (ms)", yaxis_title="measured p50 on device (ms)"
    )
    return _plot(loop, "closed-loop", "Estimated vs measured latency per profile")


def _model_size(go: Any, figures: FleetFigures) -> Plot | None:
    if not figures.bundles:
        return None
    size = go.Figure(
        go.Bar(
            x=[f"{b.bundle_id} ({b.profile})" for b in figures.bundles],
            y=[b.model_bytes / 1024 for b in figures.bundles],
        )
    )
    size.update_layout(yaxis_title="KiB")
    return _plot(size, "size", "Model size per bundle")


def _device_reports(go: Any, figures: FleetFigures) -> Plot | None:
    if not figures.devices:
        return None
    colors = {"online": "#2ca02c", "offline": "#d62728"}
    counts = go.Figure(
        go.Bar(
            x=[d.device_id for d in figures.devices],
            y=[d.reports for d in figures.devices],
            marker={"color": [colors.get(d.last_status or "", "#7f7f7f") for d in figures.devices]},
            text=[d.last_status or "unknown" for d in figures.devices],
        )
    )
    counts.update_layout(yaxis_title="reports stored")
    return _plot(counts, "devices", "Reports per device (colour: last status)")


def _plot(figure: Any, plot_id: str, title: str) -> Plot:
    figure.update_layout(title=title, **_LAYOUT)
    html = figure.to_html(
        full_html=False, include_plotlyjs=False, div_id=f"plot-{plot_id}", config=_CONFIG
    )
    return Plot(plot_id, title, html)


def plotly_js() -> str:
    """plotly.js itself, to inline in the page so it works offline."""
    offline = require("plotly.offline", extra="collector", package="plotly")
    return str(offline.get_plotlyjs())
