"""ONNX models (``.onnx``) as a :class:`~edgekit.converters.source.Source`.

The graph is checked on the way in (:func:`~edgekit.converters.onnx_model.load_onnx`), becomes
``.onnx`` artifacts only (there is no maintained ONNX -> TFLite converter), is pruned one-shot by
magnitude (an ONNX file carries no training graph), and has its dynamic non-batch axes pinned to
the data's shapes, which ONNX Runtime's quantizer needs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgekit.converters.formats import Exporter
from edgekit.converters.onnx_exporter import OnnxExporter
from edgekit.converters.onnx_model import OnnxModel, fix_shapes, load_onnx, source_digest
from edgekit.converters.prune import PruneOutcome, PruneSpec
from edgekit.converters.prune_onnx import prune_onnx
from edgekit.converters.source import SampleShapes, cannot_become
from edgekit.datasets import LabelledData
from edgekit.errors import ConversionError, DataError
from edgekit.manifest import TensorSpec
from edgekit.progress import Progress
from edgekit.vocab import ModelFormat, PruneKind, SourceKind


@dataclass(frozen=True)
class OnnxSource:
    """A checked ONNX graph."""

    expected: ClassVar[str] = ".onnx"

    model: OnnxModel
    name: str
    sha256: str
    kind: SourceKind = SourceKind.ONNX

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.model.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.model.outputs

    @classmethod
    def accepts(cls, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() == ".onnx"

    @classmethod
    def open(cls, path: Path, *, work_dir: Path) -> OnnxSource:
        return cls(model=load_onnx(path), name=path.stem, sha256=source_digest(path))

    def refusal(self, fmt: ModelFormat) -> str | None:
        if fmt is ModelFormat.ONNX:
            return None
        return (
            f"edgekit has no ONNX to {fmt.value} converter; from PyTorch, pass the "
            "torch.export program (.pt2, torch.export.save) instead"
        )

    def exporter(self, fmt: ModelFormat, *, work_dir: Path) -> Exporter:
        if self.refusal(fmt) is not None:
            raise cannot_become(self, fmt)
        return OnnxExporter(self.model, work_dir=work_dir)

    def prune(
        self,
        spec: PruneSpec,
        *,
        train: LabelledData | None,
        epochs: int,
        work_dir: Path,
        progress: Progress,
    ) -> tuple[OnnxSource, PruneOutcome]:
        if spec.kind is PruneKind.STRUCTURED:
            raise ConversionError(
                "structured pruning of ONNX models is not supported (it needs the training "
                "framework to rebuild layers); use --prune magnitude"
            )
        pruned, layers = prune_onnx(self.model, spec.sparsity)
        outcome = PruneOutcome(spec=spec, schedule="one-shot", layers=tuple(layers))
        return dataclasses.replace(self, model=pruned), outcome

    def pin_shapes(self, shapes: SampleShapes) -> OnnxSource:
        dynamic = [s.name for s in self.inputs if None in s.shape[1:]]
        if not dynamic:
            return self
        if missing := [name for name in dynamic if name not in shapes]:
            raise DataError(
                f"input(s) {', '.join(missing)} have dynamic axes: pass calibration data or "
                "--input-shape NAME:DIMxDIM..."
            )
        return dataclasses.replace(self, model=fix_shapes(self.model, dict(shapes)))
