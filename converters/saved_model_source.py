"""A TensorFlow SavedModel directory as a :class:`~edgekit.converters.source.Source`.

It becomes ``.tflite`` through LiteRT's converter; it holds no Keras model, so it cannot be pruned
or exported to ONNX here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edgekit.converters._errors import first_line
from edgekit.converters._tf import tensorflow
from edgekit.converters.formats import Exporter
from edgekit.converters.prune import PruneOutcome, PruneSpec
from edgekit.converters.source import SampleShapes, cannot_become
from edgekit.converters.tflite_exporter import TFLiteExporter
from edgekit.datasets import LabelledData
from edgekit.errors import ConversionError
from edgekit.manifest import TensorSpec
from edgekit.progress import Progress
from edgekit.vocab import ModelFormat, SourceKind


@dataclass(frozen=True)
class SavedModelSource:
    """A SavedModel directory with a ``serving_default`` signature."""

    expected: ClassVar[str] = "a SavedModel directory"

    path: Path
    name: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    kind: SourceKind = SourceKind.SAVED_MODEL

    @classmethod
    def accepts(cls, path: Path) -> bool:
        return path.is_dir()

    @classmethod
    def open(cls, path: Path, *, work_dir: Path) -> SavedModelSource:
        if not (path / "saved_model.pb").is_file():
            raise ConversionError(
                f"{path} is a directory without saved_model.pb; expected a SavedModel directory"
            )
        tf = tensorflow()
        try:
            loaded = tf.saved_model.load(str(path))
            fn = loaded.signatures["serving_default"]
        except KeyError as exc:
            raise ConversionError(f"SavedModel {path} has no 'serving_default' signature") from exc
        except Exception as exc:
            raise ConversionError(f"cannot load SavedModel {path}: {first_line(exc)}") from exc
        _, kwargs = fn.structured_input_signature
        outputs = fn.structured_outputs
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(file.relative_to(path).as_posix().encode())
            digest.update(file.read_bytes())
        return cls(
            path=path,
            name=path.name,
            sha256=digest.hexdigest(),
            inputs=tuple(_tf_spec(name, spec) for name, spec in sorted(kwargs.items())),
            outputs=tuple(_tf_spec(name, spec) for name, spec in sorted(outputs.items())),
        )

    def refusal(self, fmt: ModelFormat) -> str | None:
        if fmt is ModelFormat.ONNX:
            return "edgekit exports ONNX from Keras models, not from SavedModels"
        if len(self.inputs) != 1:
            return "the tflite format takes single-input models"
        return None

    def exporter(self, fmt: ModelFormat, *, work_dir: Path) -> Exporter:
        if self.refusal(fmt) is not None:
            raise cannot_become(self, fmt)
        return TFLiteExporter(self.path)

    def prune(
        self,
        spec: PruneSpec,
        *,
        train: LabelledData | None,
        epochs: int,
        work_dir: Path,
        progress: Progress,
    ) -> tuple[SavedModelSource, PruneOutcome]:
        raise ConversionError(
            f"pruning needs a Keras model (.keras or .h5) or an ONNX model; {self.name} is a "
            f"{self.kind}"
        )

    def pin_shapes(self, shapes: SampleShapes) -> SavedModelSource:
        return self  # LiteRT's converter takes dynamic axes as they are


def _tf_spec(name: str, spec: Any) -> TensorSpec:
    return TensorSpec(
        name=name,
        shape=tuple(None if d is None else int(d) for d in spec.shape),
        dtype=spec.dtype.name,
    )
