"""Training and fine-tuning Keras classifiers on integer labels (examples, pruning recovery)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgekit.converters._tf import keras


def ends_in_softmax(model: Any) -> bool:
    """True when the model outputs probabilities rather than logits."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", "") == "softmax" or type(last).__name__ == "Softmax"


def fit(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    callbacks: list[Any] | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> Any:
    """Train a classifier with Adam and sparse cross-entropy; ``on_epoch(epoch, accuracy)``."""
    k = keras()
    k.utils.set_random_seed(seed)
    model.compile(
        optimizer=k.optimizers.Adam(learning_rate),
        loss=k.losses.SparseCategoricalCrossentropy(from_logits=not ends_in_softmax(model)),
        metrics=["accuracy"],
    )
    hooks = list(callbacks or [])
    if on_epoch is not None:
        report = on_epoch
        hooks.append(
            k.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: report(epoch, float(logs.get("accuracy", 0.0)))
            )
        )
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=hooks)
    return model
