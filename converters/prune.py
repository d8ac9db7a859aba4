"""Pruning step of the pipeline: which pruning, how much, and the pruned model as a SavedModel."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekit.converters._errors import first_line
from edgekit.converters.onnx_source import OnnxModel
from edgekit.converters.prune_magnitude import (
    LayerSparsity,
    prune_one_shot,
    prune_with_fine_tuning,
)
from edgekit.converters.prune_onnx import prune_onnx
from edgekit.converters.prune_structured import ChannelPruning, prune_channels
from edgekit.converters.source import SourceModel, load_keras_model
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
    """A pruned model ready for conversion, with what pruning did per layer."""

    spec: PruneSpec
    schedule: str  # "one-shot" or "polynomial decay over N epochs" / "fine-tuned N epochs"
    layers: tuple[LayerSparsity, ...] = ()
    channels: tuple[ChannelPruning, ...] = ()
    saved_model_dir: Path | None = None  # pruned Keras model, exported for LiteRT
    keras_path: Path | None = None  # pruned Keras model, for the ONNX exporter
    onnx: OnnxModel | None = None  # pruned ONNX model


def prune(
    source: SourceModel,
    spec: PruneSpec,
    *,
    train: LabelledData | None,
    epochs: int,
    work_dir: Path,
    progress: Progress | None = None,
) -> PruneOutcome:
    """Prune a fresh copy of the source model; Keras models are saved and exported under
    ``work_dir``."""
    progress = progress or SilentProgress()
    if source.onnx is not None:
        if spec.kind is PruneKind.STRUCTURED:
            raise ConversionError(
                "structured pruning of ONNX models is not supported (it needs the training "
                "framework to rebuild layers); use --prune magnitude"
            )
        pruned_onnx, onnx_layers = prune_onnx(source.onnx, spec.sparsity)
        return PruneOutcome(
            spec=spec, schedule="one-shot", layers=tuple(onnx_layers), onnx=pruned_onnx
        )
    if not source.is_keras:
        raise ConversionError(
            f"pruning needs a Keras model (.keras or .h5) or an ONNX model; {source.name} is a "
            f"{source.kind}"
        )
    labelled = None
    if train is not None:
        if train.y is None:
            raise DataError(f"--train data {train.source} has no labels y; fine-tuning needs them")
        labelled = (train.x, train.y)
    model = load_keras_model(source.path)
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
    return PruneOutcome(
        spec=spec,
        schedule=schedule,
        layers=layers,
        channels=channels,
        saved_model_dir=out,
        keras_path=keras_path,
    )
