"""``edgekit example``: train a small CNN on data shipped in packages, to try ``edgekit build``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from edgekit.cli._output import RichProgress, err_console, native_stderr_diverted


def example(
    out: Annotated[Path, typer.Argument(help="Folder to write the example into.")] = Path(
        "example"
    ),
    dataset: Annotated[
        str,
        typer.Option(help="digits (scikit-learn, no set-up) or fashion-mnist (Debian package)."),
    ] = "digits",
    epochs: Annotated[int, typer.Option(min=1, max=200, help="Training epochs.")] = 8,
) -> None:
    """Train a small CNN and write model.keras, calibration.npz and eval.npz into OUT."""
    from edgekit.converters.examples import DatasetName, load_dataset, small_cnn, train

    try:
        name = DatasetName(dataset)
    except ValueError:
        raise typer.BadParameter(
            f"unknown dataset {dataset!r}; choose from {', '.join(d.value for d in DatasetName)}",
            param_hint="--dataset",
        ) from None
    with native_stderr_diverted():
        split = load_dataset(name)
        model = small_cnn(split.x_train.shape[1:], int(split.y_train.max()) + 1)
        with RichProgress().task(f"Training on {name.value}", total=epochs) as task:
            train(
                model,
                split.x_train,
                split.y_train,
                epochs=epochs,
                on_epoch=lambda _epoch, _acc: task.advance(),
            )
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / "model.keras")
    pick = np.random.default_rng(1).permutation(len(split.x_train))[:500]
    np.savez_compressed(out / "calibration.npz", x=split.x_train[pick], y=split.y_train[pick])
    np.savez_compressed(out / "eval.npz", x=split.x_test, y=split.y_test)
    err_console().print(f"wrote {out}/model.keras, calibration.npz, eval.npz; now run:")
    typer.echo(
        f"edgekit build {out}/model.keras --profile rpi4 "
        f"--calibration {out}/calibration.npz --eval {out}/eval.npz --out {out}/bundle"
    )
