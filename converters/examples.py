"""Real data that ships in packages, and small models trained on it.

Nothing here downloads anything: scikit-learn's digits come inside its wheel, Fashion-MNIST from
Debian's ``dataset-fashion-mnist`` package. Used by ``edgekit example``, the tests and benchmarks.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.converters._tf import keras
from edgekit.converters.training import fit
from edgekit.errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


class DatasetName(StrEnum):
    """Datasets edgekit can read without a download."""

    DIGITS = "digits"  # scikit-learn, 1,797 8x8 images
    FASHION_MNIST = "fashion-mnist"  # Debian dataset-fashion-mnist, 70,000 28x28 images


@dataclass(frozen=True)
class Split:
    """Train and test arrays: x float32 NHWC in [0, 1], y int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_dataset(name: DatasetName) -> Split:
    """Load one of the shipped datasets."""
    if name is DatasetName.DIGITS:
        return digits()
    return fashion_mnist()


def digits(test_fraction: float = 0.25) -> Split:
    """scikit-learn's handwritten digits, 8x8 grey levels 0..16 scaled to [0, 1]."""
    datasets = require("sklearn.datasets", extra="build", package="scikit-learn")
    bunch = datasets.load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[..., None]
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    cut = int(len(x) * (1 - test_fraction))
    train, test = order[:cut], order[cut:]
    return Split(x[train], y[train], x[test], y[test])


def fashion_mnist(root: Path = FASHION_MNIST_DIR) -> Split:
    """Fashion-MNIST from Debian's dataset-fashion-mnist package (idx files)."""
    files = {
        "x_train": "train-images-idx3-ubyte.gz",
        "y_train": "train-labels-idx1-ubyte.gz",
        "x_test": "t10k-images-idx3-ubyte.gz",
        "y_test": "t10k-labels-idx1-ubyte.gz",
    }
    missing = [f for f in files.values() if not (root / f).is_file()]
    if missing:
        raise DataError(
            f"Fashion-MNIST not found under {root} (missing {', '.join(missing)}); "
            "install it with: apt-get install dataset-fashion-mnist"
        )
    arrays = {key: _read_idx(root / name) for key, name in files.items()}
    return Split(
        x_train=(arrays["x_train"].astype(np.float32) / 255.0)[..., None],
        y_train=arrays["y_train"].astype(np.int64),
        x_test=(arrays["x_test"].astype(np.float32) / 255.0)[..., None],
        y_test=arrays["y_test"].astype(np.int64),
    )


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format): magic, dims, then uint8 data."""
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: truncated IDX file")
    return data.reshape(dims)


def small_cnn(input_shape: tuple[int, ...], classes: int) -> Any:
    """A plain CNN (conv-pool-conv-pool-dense), ~100k parameters on 28x28 input."""
    k = keras()
    layers = k.layers
    return k.Sequential(
        [
            k.Input(input_shape),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(classes),
        ],
        name="small_cnn",
    )


def mobilenet_style(input_shape: tuple[int, ...], classes: int, *, width: int = 32) -> Any:
    """A MobileNetV1-style CNN: strided stem, depthwise-separable blocks with batch norm, GAP."""
    k = keras()
    layers = k.layers
    x = inputs = k.Input(input_shape)
    x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    for filters, stride in ((2, 1), (4, 2), (4, 1), (8, 2), (8, 1), (16, 1)):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
        x = layers.Conv2D(width * filters // 2, 1, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes)(x)
    return k.Model(inputs, outputs, name="mobilenet_style")


def train(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
) -> Any:
    """Train a fresh classifier (Adam 1e-3); ``on_epoch(epoch, accuracy)`` after each epoch."""
    return fit(model, x, y, epochs=epochs, seed=seed, on_epoch=on_epoch)


def accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a Keras classifier in percent."""
    logits = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == y) * 100.0)
