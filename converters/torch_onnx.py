"""A torch program -> ONNX, then the existing ONNX path (checks, pre-processing, QDQ int8).

``torch.onnx.export(dynamo=True)`` first (it needs onnxscript); where it fails, the TorchScript
exporter, and the build's notes say so and why. The file is written whole (``external_data=False``);
should an exporter still write ``model.onnx.data`` beside it, ``onnx.load`` reads it from there and
the artifact is serialized whole, so a bundle never holds an ONNX file missing its weights.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekit._optional import require
from edgekit.converters.formats import ArtifactIO
from edgekit.converters.onnx_exporter import OnnxExporter
from edgekit.converters.onnx_model import OnnxModel, load_onnx
from edgekit.converters.torch_errors import reason
from edgekit.converters.torch_pt2e import torch_module
from edgekit.errors import ConversionError
from edgekit.vocab import Layout

# The TorchScript exporter's opset: per-channel QDQ needs 13; 17 has LayerNormalization.
_TORCHSCRIPT_OPSET = 17


def export_onnx(program: Any, example: tuple[Any, ...], *, work_dir: Path, name: str) -> OnnxModel:
    """The program as a checked ONNX model; the TorchScript exporter where dynamo fails."""
    torch = torch_module()
    out = work_dir / f"{name}.onnx"
    inputs = list(program.graph_signature.user_inputs)
    try:
        require("onnxscript", extra="torch")
        # torch.onnx prints its steps to stdout, where `edgekit build --json` writes the report.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(program, example, dynamo=True, verbose=False,
                                             external_data=False, optimize=True)  # fmt: skip
            onnx_program.save(str(out), external_data=False)
        note = None
    except Exception as exc:  # torch.onnx raises its own and torch.export's errors
        why = reason(exc)
        _torchscript(program.module(), example, out, inputs=inputs, first=why)
        note = (f"onnx: torch.onnx.export(dynamo=True) failed ({why}); exported with the "
                "TorchScript exporter instead")  # fmt: skip
    model = load_onnx(out)
    if note is not None:
        model.notes.append(note)
    return model


def _torchscript(
    module: Any, example: tuple[Any, ...], out: Path, *, inputs: Sequence[str], first: str
) -> None:
    torch = torch_module()
    # An exported program's module refuses train() and eval(): its graph fixed the mode when it
    # was captured. The exporter is asked to leave the mode as it is (PRESERVE), and the module
    # says it is not training, so that nothing is exported as training either.
    for sub in module.modules():
        sub.training = False
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # "You are using the legacy TorchScript-based ..."
            torch.onnx.export(
                module, example, str(out), dynamo=False, opset_version=_TORCHSCRIPT_OPSET,
                input_names=list(inputs), training=torch.onnx.TrainingMode.PRESERVE,
            )  # fmt: skip
    except Exception as exc:
        raise ConversionError(
            f"cannot export to ONNX: dynamo exporter: {first}; TorchScript exporter: {reason(exc)}"
        ) from exc


class TorchOnnxExporter(OnnxExporter):
    """The ONNX exporter for a torch program's graph: its artifacts' inputs state their layout."""

    def __init__(
        self, model: OnnxModel, *, layouts: Sequence[Layout | None], work_dir: Path
    ) -> None:
        super().__init__(model, work_dir=work_dir)
        self.layouts = tuple(layouts)

    def describe(self, content: bytes) -> ArtifactIO:
        io = super().describe(content)
        specs = tuple(
            spec if layout is None else spec.model_copy(update={"layout": layout})
            for spec, layout in zip(io.inputs, self.layouts, strict=False)
        )
        return ArtifactIO(inputs=specs, outputs=io.outputs)
