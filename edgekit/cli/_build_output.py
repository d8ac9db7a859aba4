"""What ``edgekit build`` prints: the candidates and the choice, then per shipped artifact its
figures, op table and budget checks."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from edgekit.cli._output import out_console
from edgekit.cli._target_output import print_target
from edgekit.converters.report import ArtifactReport, BuildReport, CandidateRow
from edgekit.vocab import CheckStatus


def print_report(report: BuildReport) -> None:
    """The report as tables on stdout."""
    _print_report(report)


def _fmt(value: float | None, spec: str = ".2f", unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _kib(size: int | None) -> str:
    return _fmt(None if size is None else size / 1024, ".1f")


def _print_report(report: BuildReport) -> None:
    console = out_console()
    console.print(
        f"[bold]edgekit build[/bold] {report.bundle_id}: {report.model.path} ({report.model.kind}) "
        f"for {report.profile.name} ({report.profile.source}), {report.duration_s:.1f} s",
        highlight=False,
    )
    console.print(_candidate_table(report))
    console.print(report.choice, highlight=False)
    for art in report.artifacts:
        preferred = " (preferred)" if art.artifact.file == report.preferred else ""
        _print_artifact(console, art, report.profile.name, f"{art.artifact.file}{preferred}")
    console.print(f"bundle: {report.bundle_dir or 'not written'}", highlight=False)


def _print_artifact(console: Console, art: ArtifactReport, profile: str, title: str) -> None:
    console.print(_summary(art, profile, title))
    console.print(_op_table(art))
    console.print(_check_table(art))
    print_target(console, art)


def _summary(art: ArtifactReport, profile: str, title: str) -> Table:
    acc, sizes, lat = art.accuracy, art.sizes, art.latency
    summary = Table(title=title, show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    info = art.artifact
    method = f", {info.calibration_method} calibration" if info.calibration_method else ""
    summary.add_row(
        "artifact",
        f"{info.format} {info.quantization}, in {info.input_dtype} / out {info.output_dtype}"
        + (", per-channel" if info.per_channel else "")
        + method,
    )
    for figures in (acc, art.sample_accuracy):
        if figures is None or figures.metric is None:
            continue
        unit = " dB" if figures.metric == "sqnr_db" else " %"
        summary.add_row(
            f"{figures.metric}, {figures.data} ({figures.samples})",
            f"fp32 {_fmt(figures.fp32, unit=unit)} -> {_fmt(figures.quantized, unit=unit)}"
            + (f" (drop {figures.drop_pt:.2f} pt)" if figures.drop_pt is not None else ""),
        )
    summary.add_row(
        "size",
        f"fp32 {sizes.fp32_bytes / 1024:.1f} KiB -> {sizes.model_bytes / 1024:.1f} KiB "
        f"({sizes.ratio:.2f}x); gzip {_kib(sizes.fp32_gzip_bytes)} -> "
        f"{_kib(sizes.gzip_bytes)} KiB ({_fmt(sizes.gzip_ratio)}x)",
    )
    summary.add_row("MACs / params", f"{art.macs:,} / {art.params:,}")
    estimate = (
        f"unknown ({lat.est_unknown})" if lat.est_target_ms is None
        else f"fp32 {_fmt(lat.est_target_fp32_ms, '.3f')} ms -> {lat.est_target_ms:.3f} ms"
        f" ({lat.est_runtime} figures)"
    )  # fmt: skip
    summary.add_row(f"latency on {profile} (est.)", estimate)
    if lat.host_p50_ms is not None:
        summary.add_row(
            f"latency here, p50 ({lat.host_threads} thr)",
            f"fp32 {_fmt(lat.host_p50_fp32_ms, '.3f')} ms -> {lat.host_p50_ms:.3f} ms "
            f"({_fmt(lat.host_ratio)}x)",
        )
    _add_pruning_rows(summary, art)
    if art.fallback is not None:
        fb = art.fallback
        summary.add_row(
            "accuracy fallback",
            f"plain int8 drop {_fmt(fb.plain_int8_drop_pt)} pt; kept {len(fb.kept_float)} "
            f"layer(s) float: {', '.join(fb.kept_float) or '-'}; "
            + ("budget met" if fb.met_budget else "budget NOT met (best mix shown)"),
        )
    return summary


def _add_pruning_rows(summary: Table, art: ArtifactReport) -> None:
    p = art.pruning
    if p is None:
        return
    summary.add_row(
        f"pruning ({p.kind}, {p.schedule})",
        f"target {p.target:.0%}, artifact kernels {p.artifact_sparsity:.1%} zero; "
        f"MACs {p.macs_before:,} -> {p.macs_after:,}; "
        f"non-zero params {p.nonzero_params_after:,} of {p.params_after:,}",
    )
    if art.accuracy.pruned_fp32 is not None:
        summary.add_row("pruned fp32", _fmt(art.accuracy.pruned_fp32, unit=" %"))
    for attempt in p.attempts if len(p.attempts) > 1 else ():
        summary.add_row(
            f"  tried sparsity {attempt.sparsity:.2f}",
            f"drop {_fmt(attempt.drop_pt)} pt, "
            + ("within budget" if attempt.within_budget else "over budget"),
        )


def _candidate_table(report: BuildReport) -> Table:
    table = Table(title=f"candidates (choice on the {report.selection})")
    for column in ("file", "variant", "accuracy", "KiB", "p50 here (ms)", "est. (ms)", "verdict"):
        table.add_column(column, justify="right" if column in ("KiB",) else "left")
    for c in report.candidates:
        acc = c.accuracy
        accuracy = "-" if acc.quantized is None else f"{acc.quantized:.2f}"
        if acc.drop_pt is not None:
            accuracy += f" ({-acc.drop_pt:+.2f})"
        here = "-" if c.host_p50_ms is None else f"{c.host_p50_ms:.3g} ± {_share(c)}"
        style = "bold" if c.shipped else ("dim" if c.verdict.startswith("dropped") else None)
        table.add_row(c.file, c.variant, accuracy, f"{c.model_bytes / 1024:.1f}", here,
                      _fmt(c.est_target_ms, ".3g"), c.verdict, style=style)  # fmt: skip
    return table


def _share(c: CandidateRow) -> str:
    """The p50's 95 % interval as a share of it (reads at any scale, unlike ± 1.1e-05)."""
    if c.host_p50_ci_ms is None or not c.host_p50_ms:
        return "-"
    return f"{100 * c.host_p50_ci_ms / c.host_p50_ms:.2g} %"


def _op_table(art: ArtifactReport) -> Table:
    ops = Table(title=f"ops ({art.artifact.file})")
    for column in ("op", "precision", "count", "MACs"):
        ops.add_column(column, justify="right" if column in ("count", "MACs") else "left")
    for row in art.ops:
        style = "yellow" if row.precision.floating else None
        ops.add_row(row.op, row.precision, str(row.count), f"{row.macs:,}", style=style)
    return ops


def _check_table(art: ArtifactReport) -> Table:
    checks = Table(title=f"budgets ({art.artifact.file})")
    for column in ("check", "value", "limit", "status", "detail"):
        checks.add_column(column)
    colors = {
        CheckStatus.PASS: "green",
        CheckStatus.FAIL: "red",
        CheckStatus.NOT_MEASURED: "yellow",
    }
    for check in art.checks:
        checks.add_row(
            check.name,
            _fmt(check.value, ".3f", f" {check.unit}"),
            _fmt(check.limit, ".3f", f" {check.unit}"),
            f"[{colors[check.status]}]{check.status}[/]",
            check.detail,
        )
    return checks
