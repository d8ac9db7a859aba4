"""SavedModel -> ``.tflite`` with LiteRT's (TensorFlow's) converter, per the profile's scheme.

Schemes: full-integer int8 post-training quantization with calibration data (per-channel weights
unless the profile says otherwise), dynamic-range (int8 weights, float activations), fp16 weights,
or none. The converter is used as is; edgekit only chooses its options and reports what happened.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.converters._errors import first_line
from edgekit.converters._tf import tensorflow
from edgekit.errors import ConversionError, DataError
from edgekit.profiles import Build, IODtype, Quantization
from edgekit.progress import Progress, SilentProgress


@dataclass(frozen=True)
class TFLiteArtifact:
    """A converted model and what the converter refused along the way."""

    content: bytes
    scheme: Quantization
    # Ops the int8-only converter refused; with float fallback allowed they stay float.
    refused_ops: tuple[str, ...] = ()


def convert_float(saved_model_dir: Path) -> bytes:
    """The fp32 baseline: the same graph, no quantization."""
    converter = _converter(saved_model_dir)
    return _run(converter, what="fp32 conversion")


def convert(
    saved_model_dir: Path,
    build: Build,
    *,
    calibration: np.ndarray | None,
    progress: Progress | None = None,
) -> TFLiteArtifact:
    """Convert with the scheme, I/O dtypes and options of the profile's ``build`` section."""
    scheme = build.quantization
    if scheme is Quantization.NONE:
        return TFLiteArtifact(content=convert_float(saved_model_dir), scheme=scheme)
    tf = tensorflow()
    converter = _converter(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if scheme is Quantization.FP16:
        converter.target_spec.supported_types = [tf.float16]
        return TFLiteArtifact(content=_run(converter, what="fp16 conversion"), scheme=scheme)
    if scheme is Quantization.DYNAMIC:
        return TFLiteArtifact(
            content=_run(converter, what="dynamic-range conversion"), scheme=scheme
        )
    return _convert_int8(saved_model_dir, build, calibration, progress or SilentProgress())


def _convert_int8(
    saved_model_dir: Path, build: Build, calibration: np.ndarray | None, progress: Progress
) -> TFLiteArtifact:
    if calibration is None or len(calibration) == 0:
        raise DataError("int8 quantization needs calibration data: pass --calibration DATA")
    tf = tensorflow()

    def configured(ops: list[Any]) -> Any:
        converter = _converter(saved_model_dir)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = ops
        converter.inference_input_type = _tf_dtype(tf, build.input_dtype)
        converter.inference_output_type = _tf_dtype(tf, build.output_dtype)
        # The public API has no switch for this; per-tensor weights are what some
        # accelerators and older runtimes require.
        converter._experimental_disable_per_channel = not build.per_channel
        return converter

    def representative(label: str) -> Any:
        def samples() -> Iterator[list[np.ndarray]]:
            with progress.task(label, total=len(calibration)) as task:
                for sample in calibration:
                    yield [np.asarray(sample[None], dtype=np.float32)]
                    task.advance()

        return samples

    strict = configured([tf.lite.OpsSet.TFLITE_BUILTINS_INT8])
    strict.representative_dataset = representative("Calibrating (int8)")
    try:
        return TFLiteArtifact(content=strict.convert(), scheme=Quantization.INT8)
    except Exception as exc:
        refused = _op_names(str(exc))
        if not build.allow_float_fallback:
            names = ", ".join(refused) or "see the converter's message"
            raise ConversionError(
                f"int8 conversion failed and the profile forbids float ops; unquantizable ops: "
                f"{names} ({first_line(exc)})"
            ) from exc
    mixed = configured([tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS])
    mixed.representative_dataset = representative("Calibrating (int8, float fallback)")
    content = _run(mixed, what="int8 conversion with float fallback")
    return TFLiteArtifact(content=content, scheme=Quantization.INT8, refused_ops=refused)


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
