"""Keras models (``.keras``, legacy ``.h5``) as a :class:`~edgekit.converters.source.Source`.

A Keras model leaves as a SavedModel directory with known input and output specs (the robust
route to LiteRT is Keras export -> SavedModel -> converter) and, for ONNX, through Keras' own ONNX
exporter. It can be pruned (magnitude or structured, with fine-tuning) before either.
"""

from __future__ import annotations

import dataclasses
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgekit._optional import require
from edgekit.bundle import sha256_file
from edgekit.converters._errors import first_line
from edgekit.converters._tf import keras
from edgekit.converters.formats import Exporter
from edgekit.converters.onnx_exporter import OnnxExporter
from edgekit.converters.onnx_model import OnnxModel, load_onnx
from edgekit.converters.prune import PruneOutcome, PruneSpec, prune_keras
from edgekit.converters.source import SampleShapes, cannot_become
from edgekit.converters.tflite_exporter import TFLiteExporter
from edgekit.datasets import LabelledData
from edgekit.errors import ConversionError
from edgekit.manifest import TensorSpec
from edgekit.progress import Progress
from edgekit.vocab import ModelFormat, SourceKind

_H5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_KINDS = {".keras": SourceKind.KERAS, ".h5": SourceKind.H5, ".hdf5": SourceKind.H5}


@dataclass(frozen=True)
class KerasSource:
    """A Keras model file and its SavedModel export (or a pruned copy of both)."""

    expected: ClassVar[str] = ".keras, .h5"

    path: Path
    name: str
    kind: SourceKind
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    saved_model_dir: Path

    @classmethod
    def accepts(cls, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in _KINDS

    @classmethod
    def open(cls, path: Path, *, work_dir: Path) -> KerasSource:
        kind = _KINDS[path.suffix.lower()]
        _check_container(path, kind)
        model = load_keras_model(path)
        export_dir = work_dir / "saved_model"
        try:
            model.export(str(export_dir), format="tf_saved_model", verbose=False)
        except Exception as exc:  # Keras raises many types here; all mean "cannot export"
            raise ConversionError(
                f"cannot export {path} to a SavedModel: {first_line(exc)}"
            ) from exc
        return cls(
            path=path,
            name=path.stem,
            kind=kind,
            sha256=sha256_file(path),
            inputs=tuple(_keras_spec(t) for t in model.inputs),
            outputs=tuple(_keras_spec(t) for t in model.outputs),
            saved_model_dir=export_dir,
        )

    def refusal(self, fmt: ModelFormat) -> str | None:
        if fmt is ModelFormat.TFLITE and len(self.inputs) != 1:
            # The LiteRT path feeds one input; several-input models go the ONNX way.
            return "the tflite format takes single-input models"
        return None

    def exporter(self, fmt: ModelFormat, *, work_dir: Path) -> Exporter:
        if self.refusal(fmt) is not None:
            raise cannot_become(self, fmt)
        if fmt is ModelFormat.TFLITE:
            return TFLiteExporter(self.saved_model_dir)
        return OnnxExporter(keras_to_onnx(self.path, work_dir), work_dir=work_dir)

    def prune(
        self,
        spec: PruneSpec,
        *,
        train: LabelledData | None,
        epochs: int,
        work_dir: Path,
        progress: Progress,
    ) -> tuple[KerasSource, PruneOutcome]:
        pruned = prune_keras(load_keras_model(self.path), spec, train=train, epochs=epochs,
                             work_dir=work_dir, progress=progress)  # fmt: skip
        copy = dataclasses.replace(
            self, path=pruned.keras_path, saved_model_dir=pruned.saved_model_dir
        )
        return copy, pruned.outcome

    def pin_shapes(self, shapes: SampleShapes) -> KerasSource:
        return self  # TensorFlow's converters take dynamic axes as they are


def load_keras_model(path: Path) -> Any:
    """Load a .keras or .h5 model (without compiling it), with safe_mode on."""
    k = keras()
    try:
        # safe_mode stays on: a model file must not be able to run arbitrary code (Lambda layers).
        return k.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # truncated archives, bad configs, unknown layers, ...
        raise ConversionError(f"cannot load Keras model {path}: {first_line(exc)}") from exc


def keras_to_onnx(model_path: Path, work_dir: Path) -> OnnxModel:
    """Export a Keras model to ONNX (Keras' own exporter, tf2onnx underneath)."""
    require("tf2onnx", extra="build")
    model = load_keras_model(model_path)
    example = [
        np.zeros([1 if d is None else d for d in t.shape], dtype=t.dtype) for t in model.inputs
    ]
    out = work_dir / f"{model_path.stem}.onnx"
    try:
        model(example if len(example) > 1 else example[0])  # Keras exports only called models
        model.export(str(out), format="onnx", verbose=False)
    except Exception as exc:
        raise ConversionError(f"cannot export {model_path} to ONNX: {first_line(exc)}") from exc
    return load_onnx(out)


def _check_container(path: Path, kind: SourceKind) -> None:
    """A quick look at the file's container, so a wrong file gets a plain reason."""
    if kind is SourceKind.H5:
        with path.open("rb") as fh:
            if fh.read(8) != _H5_SIGNATURE:
                raise ConversionError(f"{path} is not an HDF5 file")
        return
    if not zipfile.is_zipfile(path):
        with path.open("rb") as fh:
            starts_like_zip = fh.read(4) == b"PK\x03\x04"
        if starts_like_zip:
            raise ConversionError(
                f"{path} is truncated or damaged: the zip archive has no central directory"
            )
        raise ConversionError(f"{path} is not a Keras model (.keras files are zip archives)")


def _keras_spec(tensor: Any) -> TensorSpec:
    return TensorSpec(
        name=str(tensor.name),
        shape=tuple(None if d is None else int(d) for d in tensor.shape),
        dtype=np.dtype(str(tensor.dtype)).name,
    )
