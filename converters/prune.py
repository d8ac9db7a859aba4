"""Pruning before quantization: what to prune (:class:`PruneSpec`), what pruning did
(:class:`PruneOutcome`), and pruning a Keras model. Each source prunes itself (``Source.prune``);
ONNX graphs are pruned by :mod:`edgekit.converters.prune_onnx`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.converters._errors import first_line
from edgekit.converters.prune_magnitude import (
    LayerSparsity,
    prune_one_shot,
    prune_with_fine_tuning,
)
from edgekit.converters.prune_structured import ChannelPruning, prune_channels
from edgekit.converters.training import fit
from edgekit.datasets import LabelledData
from edgekit.errors import ConversionError, DataError
from edgekit.progress import Progress, SilentProgress
from edgekit.vocab import PruneKind

# How far --auto-sparsity steps back each time the accuracy budget is missed.
AUTO_STEP = 0.1


@dataclass(frozen=True)
class PruneSpec:
    """What to prune: the kind and the target (fraction of weights or of channels)."""

    kind: PruneKind
    sparsity: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise DataError(f"sparsity must be in [0, 1), got {self.sparsity:g}")

    @property
    def active(self) -> bool:
        """True when this spec removes anything."""
        return self.kind is not PruneKind.NONE and self.sparsity > 0

    def step_back(self) -> list[float]:
        """Sparsities --auto-sparsity tries, from the target down in AUTO_STEP steps."""
        values = []
        s = self.sparsity
        while s > 1e-9:
            values.append(round(s, 4))
            s -= AUTO_STEP
        return values


@dataclass(frozen=True)
class PruneOutcome:
    """What pruning did, per layer (the pruned model itself is the source ``prune`` returns)."""

    spec: PruneSpec
    schedule: str  # "one-shot" or "polynomial decay over N epochs" / "fine-tuned N epochs"
    layers: tuple[LayerSparsity, ...] = ()
    channels: tuple[ChannelPruning, ...] = ()


@dataclass(frozen=True)
class PrunedKeras:
    """A pruned Keras model on disk: as a ``.keras`` file and exported as a SavedModel."""

    keras_path: Path
    saved_model_dir: Path
    outcome: PruneOutcome


def prune_keras(
    model: Any,
    spec: PruneSpec,
    *,
    train: LabelledData | None,
    epochs: int,
    work_dir: Path,
    progress: Progress | None = None,
) -> PrunedKeras:
    """Prune a freshly loaded Keras ``model`` (fine-tuning on ``train`` when given) and save the
    result under ``work_dir``."""
    progress = progress or SilentProgress()
    labelled = None
    if train is not None:
        if train.y is None:
            raise DataError(f"--train data {train.source} has no labels y; fine-tuning needs them")
        labelled = (train.x, train.y)
    label = f"Fine-tuning at {spec.sparsity:.0%} {spec.kind.value} sparsity"
    layers: tuple[LayerSparsity, ...] = ()
    channels: tuple[ChannelPruning, ...] = ()
    schedule = "one-shot"
    if spec.kind is PruneKind.MAGNITUDE and labelled is None:
        layers = tuple(prune_one_shot(model, spec.sparsity))
    elif spec.kind is PruneKind.MAGNITUDE and labelled is not None:
        with progress.task(label, total=epochs) as task:
            layers = tuple(
                prune_with_fine_tuning(
                    model, spec.sparsity, *labelled, epochs=epochs,
                    on_epoch=lambda _e, _a: task.advance(),
                )
            )  # fmt: skip
        schedule = f"polynomial decay over {epochs} epoch(s) of fine-tuning"
    else:
        model, figures = prune_channels(model, spec.sparsity)
        channels = tuple(figures)
        if labelled is not None:
            with progress.task(label, total=epochs) as task:
                fit(model, *labelled, epochs=epochs, learning_rate=3e-4,
                    on_epoch=lambda _e, _a: task.advance())  # fmt: skip
            schedule = f"fine-tuned {epochs} epoch(s)"
    out = work_dir / f"pruned-{spec.kind.value}-{spec.sparsity:.4f}"
    keras_path = work_dir / f"{out.name}.keras"
    try:
        model.save(keras_path)
        model.export(str(out), format="tf_saved_model", verbose=False)
    except Exception as exc:
        raise ConversionError(f"cannot export the pruned model: {first_line(exc)}") from exc
    outcome = PruneOutcome(spec=spec, schedule=schedule, layers=layers, channels=channels)
    return PrunedKeras(keras_path=keras_path, saved_model_dir=out, outcome=outcome)
