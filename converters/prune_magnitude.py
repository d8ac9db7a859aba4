"""Unstructured magnitude pruning of Keras 3 models, one-shot or with a polynomial-decay schedule.

TensorFlow Model Optimization's pruning wrappers only accept Keras 2 (``tf_keras``) models, so
edgekit prunes Keras 3 models itself: per layer, the smallest-magnitude kernel weights are zeroed
to the target sparsity. With training data the sparsity ramps up over fine-tuning along
``s(t) = s_f * (1 - (1 - t / T) ** 3)`` (Zhu & Gupta, 2017; TFMOT's PolynomialDecay) and the
masks are re-applied after every optimizer step, so pruned weights stay exactly zero.

Zeros survive conversion: batch-norm folding multiplies each output channel by a constant and
symmetric int8 weight quantization has zero point 0, so a zero weight stays a zero weight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.converters._tf import keras
from edgekit.converters.training import fit
from edgekit.errors import ConversionError

# Layer class -> attributes holding prunable kernels (biases and normalization are never pruned).
_KERNELS: dict[str, tuple[str, ...]] = {
    "Dense": ("kernel",),
    "Conv1D": ("kernel",),
    "Conv2D": ("kernel",),
    "Conv3D": ("kernel",),
    "Conv2DTranspose": ("kernel",),
    "DepthwiseConv2D": ("kernel",),
    "SeparableConv2D": ("depthwise_kernel", "pointwise_kernel"),
}


@dataclass(frozen=True)
class LayerSparsity:
    """Target and achieved sparsity of one pruned kernel in the Keras model."""

    layer: str
    weight: str
    size: int
    target: float
    achieved: float


def prunable_kernels(model: Any) -> list[tuple[str, str, Any]]:
    """(layer name, attribute, variable) for every kernel magnitude pruning applies to."""
    found = []
    for layer in _all_layers(model):
        for attr in _KERNELS.get(type(layer).__name__, ()):
            variable = getattr(layer, attr, None)
            if variable is not None:
                found.append((layer.name, attr, variable))
    return found


def _all_layers(model: Any) -> list[Any]:
    layers = []
    for layer in model.layers:
        layers.extend(_all_layers(layer) if hasattr(layer, "layers") else [layer])
    return layers


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """A 0/1 mask zeroing exactly ``floor(sparsity * size)`` smallest-magnitude weights."""
    flat = np.abs(weights).ravel()
    k = int(np.floor(sparsity * flat.size))
    mask = np.ones(flat.size, dtype=weights.dtype)
    if k > 0:
        mask[np.argpartition(flat, k - 1)[:k]] = 0
    return mask.reshape(weights.shape)


def polynomial_sparsity(step: int, end_step: int, final: float, *, power: int = 3) -> float:
    """Sparsity at ``step`` of a ramp from 0 to ``final`` reached at ``end_step``."""
    progress = min(1.0, step / max(1, end_step))
    return final * (1.0 - (1.0 - progress) ** power)


class _Masks:
    """The kernels being pruned and their current masks."""

    def __init__(self, kernels: list[tuple[str, str, Any]]) -> None:
        self.kernels = kernels
        self.masks: list[np.ndarray | None] = [None] * len(kernels)

    def update(self, sparsity: float) -> None:
        for i, (_, _, variable) in enumerate(self.kernels):
            self.masks[i] = magnitude_mask(keras().ops.convert_to_numpy(variable), sparsity)
        self.apply()

    def apply(self) -> None:
        for (_, _, variable), mask in zip(self.kernels, self.masks, strict=True):
            if mask is not None:
                variable.assign(keras().ops.convert_to_numpy(variable) * mask)


def prune_one_shot(model: Any, sparsity: float) -> list[LayerSparsity]:
    """Zero the smallest weights of every prunable kernel in place; return per-layer figures."""
    kernels = _require_kernels(model)
    masks = _Masks(kernels)
    masks.update(sparsity)
    return measure(kernels, sparsity)


def prune_with_fine_tuning(
    model: Any,
    sparsity: float,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 64,
    learning_rate: float = 3e-4,
    frequency: int = 20,
    on_epoch: Callable[[int, float], None] | None = None,
) -> list[LayerSparsity]:
    """Prune while fine-tuning on (x, y): sparsity ramps to the target over the first 2/3 of steps.

    The last third trains at the final sparsity so accuracy recovers with the final masks.
    """
    k = keras()
    kernels = _require_kernels(model)
    steps_per_epoch = int(np.ceil(len(x) / batch_size))
    end_step = max(1, int(steps_per_epoch * epochs * 2 / 3))
    masks = _Masks(kernels)

    class Schedule(k.callbacks.Callback):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.step = 0

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            if self.step % frequency == 0 or self.step == end_step:
                masks.update(polynomial_sparsity(self.step, end_step, sparsity))

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            masks.apply()  # undo what the optimizer step did to pruned weights
            self.step += 1

    fit(
        model,
        x,
        y,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        callbacks=[Schedule()],
        on_epoch=on_epoch,
    )
    masks.update(sparsity)  # exactly the target, whatever the schedule's last update was
    return measure(kernels, sparsity)


def measure(kernels: list[tuple[str, str, Any]], target: float) -> list[LayerSparsity]:
    """Achieved sparsity of each kernel."""
    result = []
    for layer, attr, variable in kernels:
        w = keras().ops.convert_to_numpy(variable)
        result.append(LayerSparsity(layer, attr, int(w.size), target, float(np.mean(w == 0))))
    return result


def _require_kernels(model: Any) -> list[tuple[str, str, Any]]:
    kernels = prunable_kernels(model)
    if not kernels:
        raise ConversionError(
            "the model has no prunable layers (Dense, Conv1D/2D/3D, Conv2DTranspose, "
            "DepthwiseConv2D, SeparableConv2D)"
        )
    return kernels
