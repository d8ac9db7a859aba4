"""``edgekit build``: convert a model for a device profile and write a verified bundle."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli._output import (
    RichProgress,
    err_console,
    native_stderr_diverted,
    warning_line,
)
from edgekit.vocab import BuildStatus, EmitKind, PixelRange, PruneKind

EXIT_OVER_BUDGET = 1
# The logger edgekit.datasets says what it did to the user's data on (the images it resized).
DATA_LOGGER = "edgekit.datasets"


def build(
    model: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL",
            help="The trained model: Keras (.keras, .h5), ONNX (.onnx), a TensorFlow "
            "SavedModel directory, or PyTorch (.pt2 from torch.export.save).",
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
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace the bundle already in --out, if there is one."),
    ] = False,
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
    eval_sample: Annotated[
        int | None,
        typer.Option(
            "--eval-sample",
            min=1,
            help="Samples in the bundle's eval sample [default: 200, fewer when they would take "
            "more than 4 MiB or the artifact's size, whichever is larger].",
            show_default=False,
        ),
    ] = None,
    emit: Annotated[
        list[EmitKind] | None,
        typer.Option(
            "--emit",
            help="Also write the preferred .tflite in another form into the bundle: c, a C source "
            "and header (the model as an aligned array, its arena size, tensor shapes and "
            "quantization) for TensorFlow Lite Micro firmware.",
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
    from edgekit.bundle import archive_bundle, check_out_dir
    from edgekit.cli._build_output import print_report
    from edgekit.converters.pipeline import BuildRequest
    from edgekit.converters.pipeline import build as run_build
    from edgekit.profiles import load_profile

    device = load_profile(profile)
    out_dir = (
        out or Path("bundles") / f"{model.stem if model.is_file() else model.name}-{device.name}"
    )
    # Before the build, not after minutes of it: a bundle there is replaced only when asked.
    check_out_dir(out_dir, force=force)
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
        eval_sample_size=eval_sample,
        emit=tuple(dict.fromkeys(emit or ())),
    )
    with native_stderr_diverted(), _data_notes():
        report = run_build(request, progress=RichProgress(enabled=not quiet))
    if json_output:
        typer.echo(report.to_json(), nl=False)
    else:
        print_report(report)
    if report.eval_sample is not None and report.eval_sample.note:
        err_console().print(f"note: {report.eval_sample.note}", highlight=False, soft_wrap=True)
    for note in report.notes:
        err_console().print(f"note: {note}", highlight=False, soft_wrap=True)
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


@contextmanager
def _data_notes() -> Iterator[None]:
    """Print what data loading says about the user's data (images resized or converted) as one
    ``note:`` line each, while the build runs."""

    class _Note(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            note = f"note: {record.getMessage()}"
            err_console().print(note, highlight=False, markup=False, soft_wrap=True)

    logger = logging.getLogger(DATA_LOGGER)
    handler, level = _Note(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


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
