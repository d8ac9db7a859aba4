"""ONNX quantization with ONNX Runtime's own quantizer, nothing re-implemented.

Static int8 is ``quantize_static`` in QDQ format: signed int8 weights, signed (S8S8) or unsigned
(U8S8) activations, per-channel or per-tensor weights, and the profile's calibration method
(MinMax, Entropy, Percentile). Which of these ONNX Runtime runs fastest depends on the CPU (x86
integer kernels want unsigned activations), so the build measures them; calibration runs once
and every variant reuses its ranges (``calibration_cache_path``). Dynamic int8 is
``quantize_dynamic``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.converters._errors import first_line
from edgekit.converters.onnx_model import OnnxModel
from edgekit.datasets import LabelledData
from edgekit.errors import ConversionError, DataError
from edgekit.profiles import Build
from edgekit.progress import Progress, SilentProgress
from edgekit.vocab import CalibrationMethod, Quantization

CALIBRATION_BATCH = 16


@dataclass(frozen=True)
class OnnxArtifact:
    """A quantized (or float) ONNX model."""

    content: bytes
    scheme: Quantization
    excluded_nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class QdqOptions:
    """How a static QDQ model is quantized: activation signedness and weight granularity."""

    unsigned_activations: bool = False
    per_channel: bool = True


def quantize_onnx(
    model: OnnxModel,
    build: Build,
    *,
    calibration: LabelledData | None,
    scheme: Quantization | None = None,
    options: QdqOptions | None = None,
    exclude: tuple[str, ...] = (),
    calibration_cache: Path | None = None,
    progress: Progress | None = None,
) -> OnnxArtifact:
    """Quantize a pre-processed model per the profile's ``build`` section (``scheme`` and
    ``options`` override it).

    ``exclude`` names nodes to keep in float (the fallbacks use it). With ``calibration_cache``
    (a file path), activation ranges are computed once and read back by later calls.
    """
    scheme = scheme or build.quantization
    options = options or QdqOptions(per_channel=build.per_channel)
    if scheme is Quantization.NONE:
        return OnnxArtifact(content=model.serialized(), scheme=scheme)
    if scheme is Quantization.FP16:
        raise ConversionError(
            "fp16 is not offered for ONNX artifacts (ONNX Runtime's quantizer has no fp16 "
            "mode); use the tflite format or int8/dynamic"
        )
    q = require("onnxruntime.quantization", extra="build")
    with tempfile.TemporaryDirectory(prefix="edgekit-ortq-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(model.serialized())
        try:
            if scheme is Quantization.DYNAMIC:
                q.quantize_dynamic(
                    str(src),
                    str(dst),
                    per_channel=options.per_channel,
                    weight_type=q.QuantType.QInt8,
                    nodes_to_exclude=list(exclude),
                )
            else:
                if calibration is None or len(calibration) == 0:
                    raise DataError("int8 quantization needs calibration data: pass --calibration")
                cached = calibration_cache is not None and calibration_cache.is_file()
                label = "Quantizing (ONNX)" if cached else "Calibrating (ONNX, "
                label += "" if cached else f"{build.calibration_method.value})"
                with (progress or SilentProgress()).task(
                    label, total=0 if cached else len(calibration)
                ) as task:
                    q.quantize_static(
                        str(src),
                        str(dst),
                        _Reader(model, calibration, task),
                        quant_format=q.QuantFormat.QDQ,
                        activation_type=(
                            q.QuantType.QUInt8
                            if options.unsigned_activations
                            else q.QuantType.QInt8
                        ),
                        weight_type=q.QuantType.QInt8,
                        per_channel=options.per_channel,
                        calibrate_method=_method(q, build.calibration_method),
                        nodes_to_exclude=list(exclude),
                        calibration_cache_path=(
                            None if calibration_cache is None else str(calibration_cache)
                        ),
                    )
        except (DataError, ConversionError):
            raise
        except Exception as exc:
            raise ConversionError(
                f"ONNX Runtime could not quantize the model: {first_line(exc)}"
            ) from exc
        return OnnxArtifact(content=dst.read_bytes(), scheme=scheme, excluded_nodes=exclude)


def _method(q: Any, method: CalibrationMethod) -> Any:
    return {
        CalibrationMethod.MINMAX: q.CalibrationMethod.MinMax,
        CalibrationMethod.ENTROPY: q.CalibrationMethod.Entropy,
        CalibrationMethod.PERCENTILE: q.CalibrationMethod.Percentile,
    }[method]


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over edgekit's data, in small batches."""

    def __init__(self, model: OnnxModel, data: LabelledData, task: Any) -> None:
        self._names = [spec.name for spec in model.inputs]
        self._dtypes = [spec.dtype for spec in model.inputs]
        # A fixed batch axis forces one sample at a time.
        fixed = any(spec.shape and spec.shape[0] is not None for spec in model.inputs)
        self._batch = 1 if fixed else CALIBRATION_BATCH
        self._data = data
        self._task = task
        self._iter = self._batches()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self._data), self._batch):
            feed = {
                name: np.asarray(x[start : start + self._batch], dtype=dtype)
                for name, dtype, x in zip(self._names, self._dtypes, self._data.xs, strict=True)
            }
            yield feed
            self._task.advance(len(next(iter(feed.values()))))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = self._batches()
