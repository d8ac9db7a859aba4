"""``edgekit build``: convert a model for a device profile and write a verified bundle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from edgekit.bundle import archive_bundle
from edgekit.cli._output import (
    RichProgress,
    err_console,
    native_stderr_diverted,
    out_console,
    warning_line,
)
from edgekit.profiles import load_profile
from edgekit.vocab import BuildStatus, CheckStatus, PixelRange, PruneKind

if TYPE_CHECKING:  # the converters (and TensorFlow) load only when a build runs
    from edgekit.converters.report import ArtifactReport, BuildReport

EXIT_OVER_BUDGET = 1


def build(
    model: Annotated[
        Path,
        typer.Argument(
            help="Model: .keras, .h5, .onnx, .pt2 (torch.export.save), or a SavedModel directory.",
            show_default=False,
        ),
    ],
    profile: Annotated[
        str,
        typer.Option(
            "--profile",
            "-p",
            help="Device profile: a shipped name (see 'edgekit profiles list') or a TOML file.",
            show_default=False,
        ),
    ],
    calibration: Annotated[
        Path | None,
        typer.Option(
            help="Calibration data for int8: .npz with array x (and optional y), or a folder "
            "with one sub-folder of images per class.",
            show_default=False,
        ),
    ] = None,
    eval_data: Annotated[
        Path | None,
        typer.Option(
            "--eval",
            help="Evaluation data, same forms as --calibration; with labels y, top-1 accuracy "
            "of fp32 and quantized models is compared.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Bundle directory [default: bundles/MODEL-PROFILE].",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the build report as JSON on stdout.")
    ] = False,
    allow_over_budget: Annotated[
        bool,
        typer.Option(
            "--allow-over-budget",
            help="Write the bundle even if a budget is missed (exit 0; recorded in the manifest).",
        ),
    ] = False,
    pixel_range: Annotated[
        PixelRange, typer.Option(help="How image-folder pixels are scaled for the model.")
    ] = PixelRange.UNIT,
    archive: Annotated[
        bool, typer.Option("--archive", help="Also pack the bundle as BUNDLE.tar.gz.")
    ] = False,
    prune: Annotated[
        PruneKind | None,
        typer.Option(
            help="Prune before quantizing: magnitude (zeros, smaller gzip) or structured "
            "(fewer channels, fewer MACs) [default: the profile's].",
            show_default=False,
        ),
    ] = None,
    sparsity: Annotated[
        float | None,
        typer.Option(
            help="Fraction in [0, 1) of weights (magnitude) or channels (structured) to remove "
            "[default: the profile's].",
            show_default=False,
        ),
    ] = None,
    train: Annotated[
        Path | None,
        typer.Option(
            help="Labelled training data (.npz with x and y, or an image folder) to fine-tune "
            "the pruned model; without it pruning is one-shot.",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs with --train.")] = 2,
    auto_sparsity: Annotated[
        bool,
        typer.Option(
            "--auto-sparsity",
            help="If the pruned model misses the accuracy budget, step the sparsity back by 0.1 "
            "until it fits.",
        ),
    ] = False,
    input_shape: Annotated[
        list[str] | None,
        typer.Option(
            help="Shape of one sample for an ONNX input with dynamic axes, as NAME:1x28x28 "
            "(or 1x28x28 for a single input); repeat per input. Default: from the data.",
            show_default=False,
        ),
    ] = None,
    fallback: Annotated[
        bool | None,
        typer.Option(
            "--fallback/--no-fallback",
            help="When int8 misses the accuracy budget, keep the costliest layers float until it "
            "fits [default: the profile's].",
            show_default=False,
        ),
    ] = None,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            help="Sign the bundle's manifest with this Ed25519 private key (edgekit keygen).",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Convert MODEL for a device profile, validate it, and write a bundle.

    Exit 0: built within budget, or over budget with --allow-over-budget.

    Exit 1: over budget; the figures are printed and no bundle is written.

    Exit 2: bad input (model, profile or data), named in one line on stderr.
    """
    from edgekit.converters.pipeline import BuildRequest
    from edgekit.converters.pipeline import build as run_build

    device = load_profile(profile)
    out_dir = (
        out or Path("bundles") / f"{model.stem if model.is_file() else model.name}-{device.name}"
    )
    request = BuildRequest(
        model=model,
        profile=device,
        out_dir=out_dir,
        calibration=calibration,
        eval_data=eval_data,
        pixel_range=pixel_range,
        allow_over_budget=allow_over_budget,
        prune=prune,
        sparsity=sparsity,
        train_data=train,
        epochs=epochs,
        auto_sparsity=auto_sparsity,
        input_shapes=_input_shapes(input_shape or []),
        accuracy_fallback=fallback,
        sign_key=sign_key,
    )
    with native_stderr_diverted():
        report = run_build(request, progress=RichProgress(enabled=not quiet))
    if json_output:
        typer.echo(report.to_json(), nl=False)
    else:
        _print_report(report)
    for note in report.notes:
        err_console().print(f"note: {note}", highlight=False)
    for art in report.artifacts:
        for warning in art.warnings:
            warning_line(f"{art.artifact.file}: {warning}")
    if report.status is BuildStatus.OVER_BUDGET:
        failed = sorted({name for art in report.artifacts for name in art.failed})
        err_console().print(
            f"[red]over budget[/red] ({', '.join(failed)}): bundle not written; "
            "pass --allow-over-budget to write it anyway"
        )
        raise typer.Exit(EXIT_OVER_BUDGET)
    if archive and report.bundle_dir:
        bundle_dir = Path(report.bundle_dir)
        tarball = archive_bundle(bundle_dir, bundle_dir.with_name(bundle_dir.name + ".tar.gz"))
        err_console().print(f"archive: {tarball}")


def _input_shapes(values: list[str]) -> dict[str, tuple[int, ...]]:
    """Parse --input-shape NAME:1x28x28 (or 1x28x28 for the only input, stored under "")."""
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values:
        name, _, dims = value.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            raise typer.BadParameter(
                f"{value!r}: expected NAME:DIMxDIMx... with integer dims",
                param_hint="--input-shape",
            ) from None
        if any(d <= 0 for d in shape):
            raise typer.BadParameter(
                f"{value!r}: dims must be positive", param_hint="--input-shape"
            )
        shapes[name] = shape
    return shapes


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
    for art in report.artifacts:
        preferred = " (preferred)" if art.artifact.file == report.preferred else ""
        _print_artifact(console, art, report.profile.name, f"{art.artifact.file}{preferred}")
    console.print(f"bundle: {report.bundle_dir or 'not written'}", highlight=False)


def _print_artifact(console: Console, art: ArtifactReport, profile: str, title: str) -> None:
    console.print(_summary(art, profile, title))
    console.print(_op_table(art))
    console.print(_check_table(art))


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
    if acc.metric is not None:
        unit = " dB" if acc.metric == "sqnr_db" else " %"
        summary.add_row(
            f"{acc.metric} ({acc.samples} samples)",
            f"fp32 {_fmt(acc.fp32, unit=unit)} -> quantized {_fmt(acc.quantized, unit=unit)}"
            + (f" (drop {acc.drop_pt:.2f} pt)" if acc.drop_pt is not None else ""),
        )
    summary.add_row(
        "size",
        f"fp32 {sizes.fp32_bytes / 1024:.1f} KiB -> {sizes.model_bytes / 1024:.1f} KiB "
        f"({sizes.ratio:.2f}x); gzip {_kib(sizes.fp32_gzip_bytes)} -> "
        f"{_kib(sizes.gzip_bytes)} KiB ({_fmt(sizes.gzip_ratio)}x)",
    )
    summary.add_row("MACs / params", f"{art.macs:,} / {art.params:,}")
    summary.add_row(
        f"latency on {profile} (est.)",
        f"fp32 {_fmt(lat.est_target_fp32_ms, '.3f')} ms -> {lat.est_target_ms:.3f} ms",
    )
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


def _op_table(art: ArtifactReport) -> Table:
    ops = Table(title=f"ops ({art.artifact.file})")
    for column in ("op", "precision", "count", "MACs"):
        ops.add_column(column, justify="right" if column in ("count", "MACs") else "left")
    for row in art.ops:
        style = "yellow" if row.precision == "float" else None
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
