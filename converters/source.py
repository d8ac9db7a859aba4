"""Loading the user's model: Keras ``.keras``, legacy ``.h5``, a SavedModel directory, or ONNX.

Keras models leave as a SavedModel directory with known input and output specs (the robust
route to LiteRT is Keras export -> SavedModel -> converter); ONNX models leave checked, as an
:class:`OnnxModel`.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle import sha256_file
from edgekit.converters._errors import first_line
from edgekit.converters._tf import keras, tensorflow
from edgekit.converters.onnx_source import OnnxModel, load_onnx
from edgekit.errors import ConversionError
from edgekit.manifest import TensorSpec

_H5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class SourceModel:
    """A model ready for conversion."""

    path: Path
    name: str
    kind: str  # "keras" | "h5" | "saved_model" | "onnx"
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    saved_model_dir: Path | None = None  # Keras and SavedModel sources
    onnx: OnnxModel | None = None  # ONNX sources

    @property
    def is_keras(self) -> bool:
        """True for .keras/.h5 sources (which can be pruned and exported to ONNX)."""
        return self.kind in ("keras", "h5")


def load_source(path: Path, *, work_dir: Path) -> SourceModel:
    """Load ``path`` and export it as a SavedModel under ``work_dir``."""
    if not path.exists():
        raise ConversionError(f"model not found: {path}")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ConversionError(
                f"{path} is a directory without saved_model.pb; expected a SavedModel directory"
            )
        return _from_saved_model(path)
    suffix = path.suffix.lower()
    if suffix == ".keras":
        if not zipfile.is_zipfile(path):
            with path.open("rb") as fh:
                starts_like_zip = fh.read(4) == b"PK\x03\x04"
            if starts_like_zip:
                raise ConversionError(
                    f"{path} is truncated or damaged: the zip archive has no central directory"
                )
            raise ConversionError(f"{path} is not a Keras model (.keras files are zip archives)")
        kind = "keras"
    elif suffix in (".h5", ".hdf5"):
        with path.open("rb") as fh:
            if fh.read(8) != _H5_SIGNATURE:
                raise ConversionError(f"{path} is not an HDF5 file")
        kind = "h5"
    elif suffix == ".onnx":
        onnx_model = load_onnx(path)
        return SourceModel(
            path=path,
            name=path.stem,
            kind="onnx",
            sha256=sha256_file(path),
            inputs=onnx_model.inputs,
            outputs=onnx_model.outputs,
            onnx=onnx_model,
        )
    else:
        raise ConversionError(
            f"unsupported model file {path}: expected .keras, .h5, .onnx or a SavedModel directory"
        )
    model = load_keras_model(path)
    export_dir = work_dir / "saved_model"
    try:
        model.export(str(export_dir), format="tf_saved_model", verbose=False)
    except Exception as exc:  # Keras raises many types here; all mean "cannot export"
        raise ConversionError(f"cannot export {path} to a SavedModel: {first_line(exc)}") from exc
    return SourceModel(
        path=path,
        name=path.stem,
        kind=kind,
        sha256=sha256_file(path),
        saved_model_dir=export_dir,
        inputs=tuple(_keras_spec(t) for t in model.inputs),
        outputs=tuple(_keras_spec(t) for t in model.outputs),
    )


def load_keras_model(path: Path) -> Any:
    """Load a .keras or .h5 model (without compiling it), with safe_mode on."""
    k = keras()
    try:
        # safe_mode stays on: a model file must not be able to run arbitrary code (Lambda layers).
        return k.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # truncated archives, bad configs, unknown layers, ...
        raise ConversionError(f"cannot load Keras model {path}: {first_line(exc)}") from exc


def _from_saved_model(path: Path) -> SourceModel:
    tf = tensorflow()
    try:
        loaded = tf.saved_model.load(str(path))
        fn = loaded.signatures["serving_default"]
    except KeyError as exc:
        raise ConversionError(f"SavedModel {path} has no 'serving_default' signature") from exc
    except Exception as exc:
        raise ConversionError(f"cannot load SavedModel {path}: {first_line(exc)}") from exc
    _, kwargs = fn.structured_input_signature
    inputs = tuple(_tf_spec(name, spec) for name, spec in sorted(kwargs.items()))
    outputs = tuple(_tf_spec(name, spec) for name, spec in sorted(fn.structured_outputs.items()))
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(file.read_bytes())
    return SourceModel(
        path=path,
        name=path.name,
        kind="saved_model",
        sha256=digest.hexdigest(),
        saved_model_dir=path,
        inputs=inputs,
        outputs=outputs,
    )


def _keras_spec(tensor: Any) -> TensorSpec:
    return TensorSpec(
        name=str(tensor.name),
        shape=tuple(None if d is None else int(d) for d in tensor.shape),
        dtype=np.dtype(str(tensor.dtype)).name,
    )


def _tf_spec(name: str, spec: Any) -> TensorSpec:
    return TensorSpec(
        name=name,
        shape=tuple(None if d is None else int(d) for d in spec.shape),
        dtype=spec.dtype.name,
    )
