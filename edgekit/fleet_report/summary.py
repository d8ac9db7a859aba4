"""The report in a few lines for the terminal: one row per profile, then what needs a look."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from edgekit.fleet_report.figures import FleetFigures

# How many A/B verdicts and drifting boards the terminal lists (the report has them all).
_SHOWN = 3


def print_summary(figures: FleetFigures, console: Console) -> None:
    """Print the summary table of ``figures`` and the lines under it."""
    if figures.is_empty:
        console.print("no reports yet", highlight=False)
        return
    table = Table(
        title="edgekit fleet: best bundle per profile",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
    widths = {"boards": 6, "p50 ms": 6, "p99 ms": 6, "accuracy": 11, "est.err": 7}
    table.add_column(
        "profile", no_wrap=True, min_width=min(12, max(len(b.profile) for b in figures.best))
    )
    table.add_column("bundle", no_wrap=True, overflow="ellipsis", max_width=23)
    for column, width in widths.items():
        table.add_column(column, justify="right", no_wrap=True, min_width=width)
    loops = {p.profile: p for p in figures.profiles}
    for best in figures.best:
        b = figures.bundle(best.bundle_digest)
        if b is None:
            continue
        loop = loops.get(best.profile)
        ratio = loop.measured_over_estimated if loop else None
        accuracy = f"{_n(b.accuracy)}/{_n(b.quantized)}" if b.accuracy is not None else "-"
        error = "-" if ratio is None else f"{(ratio - 1) * 100:+.0f} %"
        table.add_row(best.profile, b.short_label, str(b.devices), _n(b.p50_ms), _n(b.p99_ms),
                      accuracy, error)  # fmt: skip
    console.print(table)
    console.print(
        f"accuracy: on device / at build ({_build_samples(figures)}); est. error: measured p50 "
        "on real boards against the build's estimate",
        style="dim",
        highlight=False,
        markup=False,
    )
    health = figures.health_counts()
    console.print(
        f"{len(figures.devices)} boards: {health['reporting']} reporting, "
        f"{health['offline']} offline, {health['silent']} silent; "
        f"{figures.report_count} reports, {figures.rejected_count} rejected",
        highlight=False,
    )
    simulated = sum(1 for d in figures.devices if d.host.value in ("simulated", "mismatched"))
    if simulated:
        console.print(
            f"{simulated} board(s) on a host that is not their profile's architecture "
            "(simulated or mismatched)",
            highlight=False,
        )
    for warning in figures.fp32_warnings:
        console.print(f"warning: {warning}", style="yellow", highlight=False, markup=False)
    for c in figures.comparisons[:_SHOWN]:
        console.print(f"A/B {c.profile}: {c.verdict}", highlight=False, markup=False)
    for choice in figures.choice_summaries[:_SHOWN]:
        console.print(f"candidates {choice.label}: {choice.text}", highlight=False, markup=False)
    drifting = figures.drifting
    for d in drifting[:_SHOWN]:
        source = "watched inputs" if d.source == "watch" else "eval sample"
        console.print(f"drift: {d.device_id} ({source}): {d.reason}", highlight=False, markup=False)
    if len(drifting) > _SHOWN:
        console.print(f"... and {len(drifting) - _SHOWN} more drifting", highlight=False)


def _build_samples(figures: FleetFigures) -> str:
    """What the build's accuracy in the table was measured on: once when every row says the
    same, else per profile."""
    on: dict[str, list[str]] = {}
    for best in figures.best:
        b = figures.bundle(best.bundle_digest)
        if b is not None:
            on.setdefault(b.build_accuracy_on, []).append(best.profile)
    if len(on) <= 1:
        return next(iter(on), "build")
    return "; ".join(f"{', '.join(profiles)}: {text}" for text, profiles in on.items())


def _n(value: float | None) -> str:
    if value is None:
        return "-"
    return (
        f"{value:.3f}"
        if abs(value) < 10
        else f"{value:.2f}"
        if abs(value) < 1000
        else f"{value:.0f}"
    )
