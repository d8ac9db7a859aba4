"""SavedModel -> ``.tflite`` with LiteRT's (TensorFlow's) converter, per the profile's scheme.

Schemes: full-integer int8 post-training quantization with calibration data (per-channel weights
unless the profile says otherwise), dynamic-range (int8 weights, float activations), fp16 weights,
or none. The converter is used as is; edgekit only chooses its options and reports what happened.
Layers are kept float (the accuracy-aware fallback) with LiteRT's QuantizationDebugger, which
re-quantizes a calibrated model with a deny-list of nodes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.converters._errors import first_line
from edgekit.converters._tf import tensorflow
from edgekit.converters.formats import (
    ArtifactIO,
    GraphNode,
    LayerCost,
    OpCost,
    Quantized,
    Variant,
    channel_sqnr_db,
    describe_in_runtime,
    rank_by_sqnr_loss,
)
from edgekit.converters.model_stats import DATA_MOVEMENT_OPS, ModelStats
from edgekit.converters.tflite_inspect import inspect_tflite
from edgekit.converters.tflite_tensors import AllTensors
from edgekit.datasets import LabelledData
from edgekit.errors import ConversionError, DataError
from edgekit.profiles import Build
from edgekit.progress import Progress, SilentProgress
from edgekit.vocab import BackendName, CalibrationMethod, IODtype, ModelFormat, Quantization

_LABELS = {
    Quantization.INT8: "int8 full-integer",
    Quantization.DYNAMIC: "dynamic-range (int8 weights)",
    Quantization.FP16: "fp16 weights",
    Quantization.NONE: "fp32",
}
# Keeping these float would not win accuracy back: they only move data.
_NOT_CANDIDATES = DATA_MOVEMENT_OPS | {"MAX_POOL_2D"}


class TFLiteExporter:
    """SavedModel -> ``.tflite`` artifacts (the :class:`Exporter` for LiteRT)."""

    format = ModelFormat.TFLITE
    file_name = "model.tflite"
    backend = BackendName.LITERT

    def __init__(self, saved_model_dir: Path) -> None:
        self.saved_model_dir = saved_model_dir
        self._float: bytes | None = None
        self._debugger: Any = None  # calibrated once, reused for every keep-float variant

    @property
    def notes(self) -> tuple[str, ...]:
        return ()  # the SavedModel is converted as it is

    def float_model(self) -> bytes:
        if self._float is None:
            self._float = _run(_converter(self.saved_model_dir), what="fp32 conversion")
        return self._float

    def inspect(self, content: bytes) -> ModelStats:
        return inspect_tflite(content)

    def describe(self, content: bytes) -> ArtifactIO:
        return describe_in_runtime(self.backend, content)

    def calibration_method(self, build: Build, scheme: Quantization) -> CalibrationMethod | None:
        return None  # LiteRT's converter calibrates its own way; the profile has no say

    def scheme_refusal(self, build: Build) -> str | None:
        return None  # LiteRT's converter makes every scheme a profile can name

    def keep_float_refusal(self, build: Build) -> str | None:
        floats = (build.input_dtype, build.output_dtype) == (IODtype.FLOAT32, IODtype.FLOAT32)
        # The QuantizationDebugger that keeps layers float only produces float I/O models.
        return None if floats else "keeping layers float needs float I/O"

    def variants(self, build: Build) -> tuple[Variant, ...]:
        """The profile's scheme, then, where the profile lets ops run in float with float I/O,
        dynamic-range (int8 weights, float activations) and fp16 weights."""
        primary = Variant(build.quantization.value, _LABELS[build.quantization],
                          build.quantization, self.file_name)  # fmt: skip
        if not build.allow_float_fallback or self.keep_float_refusal(build) is not None:
            return (primary,)
        others = [s for s in (Quantization.DYNAMIC, Quantization.FP16) if s != build.quantization]
        return (primary, *(Variant(s.value, _LABELS[s], s, f"model.{s.value}.tflite")
                           for s in others))  # fmt: skip

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
        scheme = build.quantization if variant is None else variant.scheme
        if scheme is Quantization.NONE:
            return Quantized(content=self.float_model(), scheme=scheme)
        tf = tensorflow()
        converter = _converter(self.saved_model_dir)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if scheme is Quantization.FP16:
            converter.target_spec.supported_types = [tf.float16]
            return Quantized(content=_run(converter, what="fp16 conversion"), scheme=scheme)
        if scheme is Quantization.DYNAMIC:
            return Quantized(
                content=_run(converter, what="dynamic-range conversion"), scheme=scheme
            )
        if calibration is None or len(calibration) == 0:
            raise DataError("int8 quantization needs calibration data: pass --calibration DATA")
        if len(calibration.xs) != 1:
            raise ConversionError("the tflite format takes single-input models; build onnx")
        if keep_float:
            return self._keeping_float(build, calibration.x, tuple(keep_float), progress)
        return self._int8(build, calibration.x, progress)

    def _configured(self, build: Build, ops: list[Any]) -> Any:
        tf = tensorflow()
        converter = _converter(self.saved_model_dir)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = ops
        converter.inference_input_type = _tf_dtype(tf, build.input_dtype)
        converter.inference_output_type = _tf_dtype(tf, build.output_dtype)
        # The public API has no switch for this; per-tensor weights are what some
        # accelerators and older runtimes require.
        converter._experimental_disable_per_channel = not build.per_channel
        return converter

    def _int8(self, build: Build, calibration: np.ndarray, progress: Progress) -> Quantized:
        tf = tensorflow()
        strict = self._configured(build, [tf.lite.OpsSet.TFLITE_BUILTINS_INT8])
        strict.representative_dataset = _representative(calibration, progress, "Calibrating (int8)")
        try:
            return Quantized(content=strict.convert(), scheme=Quantization.INT8)
        except Exception as exc:
            refused = _op_names(str(exc))
            if not build.allow_float_fallback:
                names = ", ".join(refused) or "see the converter's message"
                raise ConversionError(
                    f"int8 conversion failed and the profile forbids float ops; unquantizable "
                    f"ops: {names} ({first_line(exc)})"
                ) from exc
        mixed = self._configured(
            build, [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        )
        mixed.representative_dataset = _representative(
            calibration, progress, "Calibrating (int8, float fallback)"
        )
        content = _run(mixed, what="int8 conversion with float fallback")
        return Quantized(content=content, scheme=Quantization.INT8, refused_ops=refused)

    def _keeping_float(
        self, build: Build, calibration: np.ndarray, keep: tuple[str, ...], progress: Progress
    ) -> Quantized:
        """int8 with the named layers (op output tensors) left float, through LiteRT's
        QuantizationDebugger, which calibrates once and re-quantizes selectively."""
        tf = tensorflow()
        if build.input_dtype is not IODtype.FLOAT32 or build.output_dtype is not IODtype.FLOAT32:
            raise ConversionError("keeping layers float needs float32 model inputs and outputs")
        if self._debugger is None:
            converter = self._configured(
                build, [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            )
            converter.representative_dataset = _representative(
                calibration, progress, "Calibrating (selective int8)"
            )
            try:
                self._debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=converter,
                    debug_dataset=lambda: ([s[None].astype(np.float32)] for s in calibration[:1]),
                )
            except Exception as exc:
                raise ConversionError(f"selective quantization failed: {first_line(exc)}") from exc
        self._debugger.options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=list(keep)
        )
        try:
            content = self._debugger.get_nondebug_quantized_model()
        except Exception as exc:
            raise ConversionError(f"selective quantization failed: {first_line(exc)}") from exc
        return Quantized(content=content, scheme=Quantization.INT8, kept_float=keep)

    def op_costs(
        self, quantized: bytes, sample: LabelledData, *, threads: int
    ) -> tuple[OpCost, ...] | None:
        """None: XNNPACK runs the graph as one delegated node, and LiteRT's Python interpreter
        has no per-op profiler, so a per-op comparison would not describe what the board runs."""
        return None

    def rank_layers(
        self, quantized: bytes, sample: LabelledData, *, progress: Progress | None = None
    ) -> list[LayerCost]:
        """Compare every tensor of the quantized model with the fp32 model's, sample by sample."""
        progress = progress or SilentProgress()
        x = sample.x
        ref = AllTensors(self.float_model())
        test = AllTensors(quantized)
        names = test.canonical_names(ref.names)
        collected_ref: dict[str, list[np.ndarray]] = {}
        collected_test: dict[str, list[np.ndarray]] = {}
        renamed = set(names.values())
        with progress.task("Comparing layers with fp32", total=len(x)) as task:
            for one in x:
                for name, value in ref.run(one[None]).items():
                    collected_ref.setdefault(name, []).append(value)
                for name, value in test.run(one[None]).items():
                    if name in renamed and name not in names:
                        continue  # a float edge tensor; its quantized twin stands for it
                    collected_test.setdefault(names.get(name, name), []).append(value)
                task.advance()
        sqnr = {
            name: channel_sqnr_db(
                np.concatenate(collected_ref[name]), np.concatenate(values), channel_axis=-1
            )
            for name, values in collected_test.items()
            if name in collected_ref and collected_ref[name][0].shape == values[0].shape
        }
        nodes = [
            GraphNode(
                name=names.get(op["output"], op["output"]),
                op=op["op"],
                inputs=tuple(names.get(t, t) for t in op["inputs"]),
                output=names.get(op["output"], op["output"]),
                candidate=op["op"] not in _NOT_CANDIDATES and op["quantized"],
            )
            for op in test.ops
        ]
        return rank_by_sqnr_loss(nodes, sqnr)


def _representative(calibration: np.ndarray, progress: Progress, label: str) -> Any:
    def samples() -> Iterator[list[np.ndarray]]:
        with progress.task(label, total=len(calibration)) as task:
            for sample in calibration:
                yield [np.asarray(sample[None], dtype=np.float32)]
                task.advance()

    return samples


def convert_float(saved_model_dir: Path) -> bytes:
    """The fp32 baseline of a SavedModel."""
    return TFLiteExporter(saved_model_dir).float_model()


def _converter(saved_model_dir: Path) -> Any:
    tf = tensorflow()
    try:
        return tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    except Exception as exc:
        raise ConversionError(
            f"cannot read SavedModel {saved_model_dir}: {first_line(exc)}"
        ) from exc


def _run(converter: Any, *, what: str) -> bytes:
    try:
        content: bytes = converter.convert()
    except Exception as exc:
        ops = _op_names(str(exc))
        named = f" (ops: {', '.join(ops)})" if ops else ""
        raise ConversionError(f"{what} failed{named}: {first_line(exc)}") from exc
    return content


def _tf_dtype(tf: Any, dtype: IODtype) -> Any:
    return {IODtype.FLOAT32: tf.float32, IODtype.INT8: tf.int8, IODtype.UINT8: tf.uint8}[dtype]


_OP_PATTERNS = (
    re.compile(r"'tfl\.([a-z0-9_]+)'"),
    re.compile(r"\btf\.([A-Z][A-Za-z0-9]+)\b"),
    re.compile(r"op: '?([A-Z][A-Z0-9_]+)'?"),
)


def _op_names(message: str) -> tuple[str, ...]:
    """Op names the converter mentions in an error, upper-cased like the op table shows them."""
    found: dict[str, None] = {}
    for pattern in _OP_PATTERNS:
        for match in pattern.finditer(message):
            found[match.group(1).upper()] = None
    return tuple(found)
