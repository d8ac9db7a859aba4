"""Small Keras models for the microcontroller tests, trained on scikit-learn's digits (8x8)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class DigitsModel:
    """A Keras model file with its calibration and evaluation data."""

    model: Path
    calibration: Path
    eval: Path


def _save_data(root: Path) -> tuple[Path, Path]:
    from edgekit.converters import examples

    split = examples.digits()
    calibration, evaluation = root / "calibration.npz", root / "eval.npz"
    np.savez(calibration, x=split.x_train[:300], y=split.y_train[:300])
    np.savez(evaluation, x=split.x_test, y=split.y_test)
    return calibration, evaluation


def digits_cnn(root: Path) -> DigitsModel:
    """examples.small_cnn trained on the digits (conv-pool-conv-pool-dense)."""
    from edgekit.converters import examples

    root.mkdir(parents=True, exist_ok=True)
    split = examples.digits()
    model = examples.small_cnn((8, 8, 1), 10)
    examples.train(model, split.x_train, split.y_train, epochs=8, seed=0)
    path = root / "digits_cnn.keras"
    model.save(path)
    return DigitsModel(path, *_save_data(root))


def gelu_cnn(root: Path) -> DigitsModel:
    """A CNN with an exact GELU: int8 in LiteRT, an op TensorFlow Lite Micro has no kernel for."""
    import keras

    from edgekit.converters import examples

    root.mkdir(parents=True, exist_ok=True)
    split = examples.digits()
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.Conv2D(8, 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(16, activation="gelu"),  # keras' gelu is the exact (erf) form: GELU
        layers.Dense(10),
    ])  # fmt: skip
    examples.train(model, split.x_train, split.y_train, epochs=4, seed=0)
    path = root / "gelu_cnn.keras"
    model.save(path)
    return DigitsModel(path, *_save_data(root))


def profile_with(tmp_path: Path, base: str, **replace: str) -> Path:
    """A copy of the shipped profile ``base`` with each key's text replaced by its value."""
    from importlib import resources

    text = resources.files("edgekit.device_profiles").joinpath(f"{base}.toml").read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{base}-custom.toml"
    path.write_text(text)
    return path
