"""PyTorch programs (``.pt2``, saved with ``torch.export.save``) as a
:class:`~edgekit.converters.source.Source`.

A program becomes ``.tflite`` through litert-torch
(:mod:`~edgekit.converters.torch_tflite_exporter`) and ``.onnx`` through ``torch.onnx.export``
(:mod:`~edgekit.converters.torch_onnx`), and prunes itself
(:mod:`~edgekit.converters.prune_torch`). Only ``torch.export.load`` reads the file: edgekit never
unpickles a model, so checkpoints (``.pt``, ``.pth``: a state dict or a pickled module) are
refused with the two lines that turn a module into a program.
"""

from __future__ import annotations

import dataclasses
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edgekit.bundle import sha256_file
from edgekit.converters.formats import Exporter
from edgekit.converters.prune import PruneOutcome, PruneSpec
from edgekit.converters.source import SampleShapes, cannot_become
from edgekit.converters.torch_errors import reason
from edgekit.converters.torch_pt2e import eval_module, torch_module
from edgekit.datasets import LabelledData
from edgekit.errors import ConversionError
from edgekit.manifest import TensorSpec
from edgekit.progress import Progress
from edgekit.vocab import Layout, ModelFormat, SourceKind

HOW_TO_PT2 = (
    "make a .pt2 with: ep = torch.export.export(model.eval(), (example_input,)); "
    "torch.export.save(ep, 'model.pt2')"
)
_CHECKPOINTS = {".pt", ".pth", ".ckpt"}
_DTYPES = {"float32", "float16", "int8", "uint8", "int16", "int32", "int64", "bool"}


@dataclass(frozen=True)
class TorchSource:
    """A torch.export program, its interface and the example inputs it was captured with."""

    expected: ClassVar[str] = ".pt2 (torch.export.save)"

    path: Path
    name: str
    sha256: str
    program: Any  # torch.export.ExportedProgram
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    kind: SourceKind = SourceKind.PYTORCH

    @classmethod
    def accepts(cls, path: Path) -> bool:
        # Checkpoints are accepted only to be refused with a way out.
        return path.is_file() and path.suffix.lower() in {".pt2", *_CHECKPOINTS}

    @classmethod
    def open(cls, path: Path, *, work_dir: Path) -> TorchSource:
        _check_container(path)
        torch = torch_module()
        try:
            program = torch.export.load(str(path))
        except Exception as exc:  # RuntimeError("...deserializing...") and friends
            raise ConversionError(
                f"cannot load {path} as a torch.export program ({reason(exc)}); {HOW_TO_PT2}"
            ) from exc
        return cls.of_program(program, path=path)

    @classmethod
    def of_program(cls, program: Any, *, path: Path) -> TorchSource:
        """The source for ``program``, saved at ``path``."""
        inputs, outputs = interface(program)
        return cls(path=path, name=path.stem, sha256=sha256_file(path), program=program,
                   inputs=inputs, outputs=outputs)  # fmt: skip

    def refusal(self, fmt: ModelFormat) -> str | None:
        if fmt is ModelFormat.TFLITE and len(self.inputs) != 1:
            return "the tflite format takes single-input models"
        return None

    def example(self) -> tuple[Any, ...]:
        """Zero inputs of the shapes the program was captured with (batch included)."""
        torch = torch_module()
        return tuple(
            torch.zeros(shape, dtype=getattr(torch, spec.dtype))
            for spec, shape in zip(self.inputs, captured_shapes(self.program), strict=True)
        )

    def layouts(self) -> tuple[Layout | None, ...]:
        """The stated layout of each input."""
        return tuple(spec.layout for spec in self.inputs)

    def exporter(self, fmt: ModelFormat, *, work_dir: Path) -> Exporter:
        if self.refusal(fmt) is not None:
            raise cannot_become(self, fmt)
        if fmt is ModelFormat.TFLITE:
            from edgekit.converters.torch_tflite_exporter import TorchTFLiteExporter

            return TorchTFLiteExporter(eval_module(self.program), self.example(),
                                       layouts=self.layouts())  # fmt: skip
        from edgekit.converters.torch_onnx import TorchOnnxExporter, export_onnx

        model = export_onnx(self.program, self.example(), work_dir=work_dir, name=self.name)
        return TorchOnnxExporter(model, layouts=self.layouts(), work_dir=work_dir)

    def prune(
        self,
        spec: PruneSpec,
        *,
        train: LabelledData | None,
        epochs: int,
        work_dir: Path,
        progress: Progress,
    ) -> tuple[TorchSource, PruneOutcome]:
        from edgekit.converters.prune_torch import prune_program

        program, outcome = prune_program(self.program, self.example(), spec, train=train,
                                         epochs=epochs, progress=progress)  # fmt: skip
        out = work_dir / f"{self.name}-pruned-{spec.kind.value}-{spec.sparsity:.4f}.pt2"
        torch_module().export.save(program, str(out))
        return dataclasses.replace(self, program=program, path=out), outcome

    def pin_shapes(self, shapes: SampleShapes) -> TorchSource:
        return self  # a program's shapes are fixed when it is captured


def captured_shapes(program: Any) -> list[tuple[int, ...]]:
    """Each user input's shape as captured (a symbolic axis taken at 1)."""
    return [tuple(d if isinstance(d, int) else 1 for d in _placeholder(program, name).shape)
            for name in program.graph_signature.user_inputs]  # fmt: skip


def interface(program: Any) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The program's inputs and outputs as specs (batch axis dynamic; 4-D inputs NCHW)."""
    inputs = []
    for name in program.graph_signature.user_inputs:
        value = _placeholder(program, name)
        inputs.append(_spec(name, value, layout=Layout.NCHW if value.dim() == 4 else None))
    output_node = next(n for n in program.graph.nodes if n.op == "output")
    values = [a.meta.get("val") for a in output_node.args[0] if hasattr(a, "meta")]
    names = list(program.graph_signature.user_outputs)
    outputs = tuple(_spec(name, v, layout=None) for name, v in zip(names, values, strict=False)
                    if v is not None)  # fmt: skip
    return tuple(inputs), outputs


def _placeholder(program: Any, name: str) -> Any:
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name == name:
            return node.meta["val"]
    raise ConversionError(f"the program has no input {name!r}")


def _spec(name: str, value: Any, *, layout: Layout | None) -> TensorSpec:
    dtype = str(value.dtype).removeprefix("torch.")
    if dtype not in _DTYPES:
        raise ConversionError(f"tensor {name!r} has dtype {dtype}, which edgekit cannot feed")
    dims = tuple(int(d) if isinstance(d, int) else None for d in value.shape)
    shape = (None, *dims[1:]) if dims else dims  # batches of any size are fed
    return TensorSpec(name=name, shape=shape, dtype=dtype, layout=layout)


def _check_container(path: Path) -> None:
    """A checkpoint or a non-program file gets its reason before torch is asked."""
    if path.suffix.lower() in _CHECKPOINTS:
        raise ConversionError(
            f"{path} is a PyTorch checkpoint (a state dict or a pickled module), which edgekit "
            f"does not unpickle; {HOW_TO_PT2}"
        )
    if not zipfile.is_zipfile(path):
        raise ConversionError(
            f"{path} is not a torch.export program (.pt2 files are zip archives); {HOW_TO_PT2}"
        )
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(n.endswith("data.pkl") for n in names) and not any("/models/" in n for n in names):
        raise ConversionError(
            f"{path} was written by torch.save (a checkpoint or pickled module), not "
            f"torch.export.save; edgekit does not unpickle models; {HOW_TO_PT2}"
        )
