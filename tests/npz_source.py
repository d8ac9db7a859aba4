"""A test-only source kind: a fixed two-layer dense classifier whose weights come from an ``.npz``.

The file holds ``w1`` (inputs x hidden), ``b1``, ``w2`` (hidden x classes) and ``b2``; the source
builds the graph x -> MatMul -> Add -> Relu -> MatMul -> Add as ONNX and hands it to the ONNX
exporter. Registered by a test through :func:`edgekit.converters.source_registry.register`, it
shows that a new kind is one module and one registry line, with no change to the pipeline.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgekit.bundle import sha256_file
from edgekit.converters.formats import Exporter
from edgekit.converters.onnx_exporter import OnnxExporter
from edgekit.converters.onnx_model import OnnxModel, load_onnx
from edgekit.converters.prune import PruneOutcome, PruneSpec
from edgekit.converters.prune_onnx import prune_onnx
from edgekit.converters.source import SampleShapes, cannot_become
from edgekit.datasets import LabelledData
from edgekit.errors import ConversionError
from edgekit.manifest import TensorSpec
from edgekit.progress import Progress
from edgekit.vocab import ModelFormat, PruneKind

WEIGHTS = ("w1", "b1", "w2", "b2")


@dataclass(frozen=True)
class NpzDenseSource:
    """Dense weights in an .npz, as the ONNX graph of the fixed architecture."""

    expected: ClassVar[str] = ".npz (dense weights w1, b1, w2, b2)"

    model: OnnxModel
    name: str
    sha256: str
    kind: str = "npz-dense"  # recorded in the manifest; not one of the shipped SourceKinds

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.model.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.model.outputs

    @classmethod
    def accepts(cls, path: Path) -> bool:
        return path.is_file() and path.suffix == ".npz"

    @classmethod
    def open(cls, path: Path, *, work_dir: Path) -> NpzDenseSource:
        with np.load(path, allow_pickle=False) as npz:
            if missing := [k for k in WEIGHTS if k not in npz.files]:
                raise ConversionError(f"{path}: no dense weights {', '.join(missing)}")
            w1, b1, w2, b2 = (np.asarray(npz[k], dtype=np.float32) for k in WEIGHTS)
        if not (w1.ndim == w2.ndim == 2 and b1.shape == (w1.shape[1],) == (w2.shape[0],)):
            raise ConversionError(f"{path}: w1 {w1.shape}, b1 {b1.shape}, w2 {w2.shape} differ")
        if b2.shape != (w2.shape[1],):
            raise ConversionError(f"{path}: b2 {b2.shape} does not fit w2 {w2.shape}")
        onnx_path = work_dir / f"{path.stem}.onnx"
        _write_graph(onnx_path, w1, b1, w2, b2)
        return cls(model=load_onnx(onnx_path), name=path.stem, sha256=sha256_file(path))

    def refusal(self, fmt: ModelFormat) -> str | None:
        return None if fmt is ModelFormat.ONNX else "the dense .npz source builds ONNX only"

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
    ) -> tuple[NpzDenseSource, PruneOutcome]:
        if spec.kind is not PruneKind.MAGNITUDE:
            raise ConversionError("the dense .npz source prunes by magnitude only")
        pruned, layers = prune_onnx(self.model, spec.sparsity)
        outcome = PruneOutcome(spec=spec, schedule="one-shot", layers=tuple(layers))
        return dataclasses.replace(self, model=pruned), outcome

    def pin_shapes(self, shapes: SampleShapes) -> NpzDenseSource:
        return self  # the architecture has no dynamic axes but the batch


def _write_graph(path: Path, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = {"w1": w1, "b1": b1, "w2": w2, "b2": b2}
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="dense1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="dense1_bias"),
        helper.make_node("Relu", ["h1"], ["h"], name="relu"),
        helper.make_node("MatMul", ["h", "w2"], ["l0"], name="dense2"),
        helper.make_node("Add", ["l0", "b2"], ["logits"], name="dense2_bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "npz_dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", w1.shape[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", w2.shape[1]])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, path)
