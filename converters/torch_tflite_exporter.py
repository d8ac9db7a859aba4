"""A torch program -> ``.tflite`` with litert-torch (the :class:`Exporter` for LiteRT from PyTorch).

Candidates, the profile's scheme first:
- ``pt2e``: litert-torch's PT2E int8 path (per-channel symmetric weights, calibrated, converted
  with its quantization config); layers can be kept float by module name (the accuracy fallback).
- ``aeq``: AI Edge Quantizer's static int8 recipe on the float ``.tflite``; it quantizes ops PT2E
  leaves float (hardswish, layer norm, attention matmuls, the GRU's gates), so it comes first
  where nothing may stay float (microcontrollers).
- ``dynamic``: AI Edge Quantizer's dynamic-range recipe (int8 weights, float activations), where
  the profile lets ops run in float.

The interface keeps the torch layout (NCHW): the same eval data feeds this artifact, the ONNX one
and the torch model, and the manifest says so (:class:`~edgekit.vocab.Layout`); litert-torch puts
the transpose to its internal NHWC inside the model. Both quantizers write int8 I/O; the profile's
I/O dtypes are made by :func:`~edgekit.converters.torch_tflite_edit.with_io`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.converters._errors import first_line
from edgekit.converters.formats import (
    ArtifactIO,
    LayerCost,
    OpCost,
    Quantized,
    Variant,
    describe_in_runtime,
)
from edgekit.converters.model_stats import ModelStats
from edgekit.converters.tflite_inspect import inspect_tflite
from edgekit.converters.torch_pt2e import batches, float_reference_graph, quantized_graph, quantizer
from edgekit.converters.torch_pt2e import to_tflite as litert_convert
from edgekit.converters.torch_ranking import rank_modules
from edgekit.converters.torch_tflite_edit import check_real_int8, with_io
from edgekit.datasets import LabelledData
from edgekit.errors import ConversionError, DataError
from edgekit.manifest import TensorSpec
from edgekit.profiles import Build
from edgekit.progress import Progress, SilentProgress
from edgekit.vocab import BackendName, CalibrationMethod, Layout, ModelFormat, Quantization

_LABELS = {
    "pt2e": "int8 PT2E per-channel (litert-torch)",
    "aeq": "int8 static (AI Edge Quantizer)",
    "dynamic": "dynamic-range (int8 weights, AI Edge Quantizer)",
    "fp32": "fp32",
}


class TorchTFLiteExporter:
    """A torch program -> ``.tflite`` artifacts: fp32, PT2E int8, AEQ int8, dynamic-range."""

    format = ModelFormat.TFLITE
    file_name = "model.tflite"
    backend = BackendName.LITERT

    def __init__(self, module: Any, example: tuple[Any, ...], *, layouts: Sequence[Layout | None]):
        """``module`` is the program's graph module, ``example`` its inputs (static shapes:
        litert-torch converts at the batch the program was exported with)."""
        self.module = module
        self.example = example
        self.layouts = tuple(layouts)
        self._float: bytes | None = None
        # The last plain PT2E graph and its calibration data: the fallback ranks its modules.
        self._pt2e: tuple[Any, np.ndarray] | None = None

    @property
    def batch(self) -> int:
        """The batch size the artifacts take."""
        return int(self.example[0].shape[0])

    @property
    def notes(self) -> tuple[str, ...]:
        if Layout.NCHW in self.layouts:
            return ("tflite: inputs keep PyTorch's NCHW layout (the manifest says so)",)
        return ()

    def float_model(self) -> bytes:
        if self._float is None:
            self._float = litert_convert(self.module, self.example, None)
        return self._float

    def inspect(self, content: bytes) -> ModelStats:
        return inspect_tflite(content)

    def describe(self, content: bytes) -> ArtifactIO:
        io = describe_in_runtime(self.backend, content)
        return ArtifactIO(inputs=tuple(_with_layout(s, lay) for s, lay in
                                       zip(io.inputs, self.layouts, strict=False)),
                          outputs=io.outputs)  # fmt: skip

    def calibration_method(self, build: Build, scheme: Quantization) -> CalibrationMethod | None:
        # PT2E honours the profile's choice (min/max, else histogram ranges); AEQ uses min/max.
        return build.calibration_method if scheme is Quantization.INT8 else None

    def scheme_refusal(self, build: Build) -> str | None:
        if build.quantization is Quantization.FP16:
            return "litert-torch and AI Edge Quantizer have no fp16-weight mode"
        return None

    def keep_float_refusal(self, build: Build) -> str | None:
        return None  # PT2E keeps modules float whatever the I/O dtypes

    def variants(self, build: Build) -> tuple[Variant, ...]:
        """The profile's scheme first (PT2E int8, or AEQ int8 where nothing may stay float),
        then the other int8 quantizer and, where float ops are allowed, dynamic-range."""
        scheme = build.quantization
        if scheme is Quantization.INT8:
            keys = ["pt2e", "aeq", "dynamic"] if build.allow_float_fallback else ["aeq"]
        elif scheme is Quantization.DYNAMIC:
            keys = ["dynamic"]
        elif scheme is Quantization.NONE:
            keys = ["fp32"]
        else:
            raise ConversionError(f"tflite from PyTorch: {self.scheme_refusal(build)}")
        return tuple(
            Variant(key, _LABELS[key], _SCHEMES[key],
                    self.file_name if i == 0 else f"model.{key}.tflite")
            for i, key in enumerate(keys)
        )  # fmt: skip

    def quantize(
        self,
        build: Build,
        calibration: LabelledData | None,
        *,
        variant: Variant | None = None,
        keep_float: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> Quantized:
        progress = progress or SilentProgress()
        key = (variant or self.variants(build)[0]).key
        if keep_float and key != "pt2e":
            raise ConversionError("layers can be kept float only on the PT2E path (variant pt2e)")
        if key == "fp32":
            return Quantized(content=self.float_model(), scheme=Quantization.NONE)
        if key == "dynamic":
            content = self._aeq("dynamic_wi8_afp32", None)
            return Quantized(content=content, scheme=Quantization.DYNAMIC)
        x = _calibration_array(calibration)
        if key == "aeq":
            content = self._aeq("static_wi8_ai8", x)
        else:
            content = self._pt2e_int8(build, x, tuple(keep_float), progress)
        check_real_int8(content)
        content = with_io(content, inputs=build.input_dtype, outputs=build.output_dtype)
        if not build.allow_float_fallback:
            _check_integer_only(content)
        return Quantized(content=content, scheme=Quantization.INT8, kept_float=tuple(keep_float))

    def _pt2e_int8(
        self, build: Build, x: np.ndarray, keep: tuple[str, ...], progress: Progress
    ) -> bytes:
        q = quantizer(per_channel=build.per_channel, method=build.calibration_method,
                      keep_float=keep)  # fmt: skip
        graph = quantized_graph(self.module, self.example, x, q, progress=progress)
        if not keep:
            self._pt2e = (graph, x)
        return litert_convert(graph, self.example, q)

    def _aeq(self, recipe_name: str, x: np.ndarray | None) -> bytes:
        """AI Edge Quantizer's ``recipe_name`` on the float model (calibrated on ``x``)."""
        quantizer_mod = require("ai_edge_quantizer.quantizer", extra="torch",
                                package="ai-edge-quantizer")  # fmt: skip
        recipes = require("ai_edge_quantizer.recipe", extra="torch", package="ai-edge-quantizer")
        float_model = self.float_model()
        signature, name = _signature_input(float_model)
        try:  # AEQ prints sizes and a progress bar; edgekit reports its own figures
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                qt = quantizer_mod.Quantizer(bytearray(float_model))
                qt.load_quantization_recipe(getattr(recipes, recipe_name)())
                ranges = None
                if qt.need_calibration:
                    assert x is not None  # static recipes are asked for with calibration data
                    feed = [{name: chunk} for chunk in batches(x, self.batch)]
                    ranges = qt.calibrate({signature: feed})
                content = bytes(qt.quantize(ranges).quantized_model)
        except Exception as exc:
            raise ConversionError(f"AI Edge Quantizer failed: {first_line(exc)}") from exc
        return content

    def op_costs(
        self, quantized: bytes, sample: LabelledData, *, threads: int
    ) -> tuple[OpCost, ...] | None:
        """None, as for the Keras path: XNNPACK runs the graph as one delegated node and LiteRT's
        Python interpreter has no per-op profiler."""
        return None

    def rank_layers(
        self, quantized: bytes, sample: LabelledData, *, progress: Progress | None = None
    ) -> list[LayerCost]:
        """Modules of the PT2E graph behind ``quantized`` ranked in torch (module names are
        what PT2E keeps float; the ``.tflite`` no longer knows them)."""
        if self._pt2e is None:
            raise ConversionError("no PT2E int8 graph to rank: quantize with variant pt2e first")
        graph, _ = self._pt2e
        with (progress or SilentProgress()).task("Comparing modules with fp32", total=1) as task:
            reference = float_reference_graph(self.module, self.example)
            ranking = rank_modules(graph, reference, _calibration_array(sample), batch=self.batch)
            task.advance()
        return ranking


_SCHEMES = {
    "pt2e": Quantization.INT8,
    "aeq": Quantization.INT8,
    "dynamic": Quantization.DYNAMIC,
    "fp32": Quantization.NONE,
}


def _calibration_array(data: LabelledData | None) -> np.ndarray:
    if data is None or len(data) == 0:
        raise DataError("int8 quantization needs calibration data: pass --calibration DATA")
    if len(data.xs) != 1:
        raise ConversionError("the tflite format takes single-input models; build onnx")
    return np.asarray(data.x, dtype=np.float32)


def _signature_input(content: bytes) -> tuple[str, str]:
    """The signature key and input name litert-torch gave the model (``serving_default``,
    ``args_0``), which AI Edge Quantizer's calibration is keyed by."""
    from edgekit.runtime import litert_interpreter

    signatures = litert_interpreter()(model_content=content).get_signature_list()
    key, entry = next(iter(signatures.items()))
    return key, entry["inputs"][0]


def _check_integer_only(content: bytes) -> None:
    """Raise ConversionError naming the ops left float (the profile forbids them)."""
    stats = inspect_tflite(content)
    if stats.float_ops:
        raise ConversionError(
            "int8 conversion left ops in float and the profile forbids float ops: "
            + ", ".join(stats.float_ops)
        )


def _with_layout(spec: TensorSpec, layout: Layout | None) -> TensorSpec:
    return spec if layout is None else spec.model_copy(update={"layout": layout})
