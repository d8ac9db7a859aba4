"""Float <-> integer conversion of model inputs and outputs with their scale and zero point."""

from __future__ import annotations

import numpy as np

from edgekit.errors import RuntimeBackendError
from edgekit.manifest import TensorSpec

_QUANTIZED = ("int8", "uint8", "int16")


def to_model_dtype(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Convert float data to what ``spec`` takes: quantized ints, or floats as they are."""
    if spec.dtype in _QUANTIZED and spec.quantization is not None:
        q = spec.quantization
        info = np.iinfo(spec.dtype)
        scaled = np.round(np.asarray(x, dtype=np.float32) / np.float32(q.scale)) + q.zero_point
        return np.clip(scaled, info.min, info.max).astype(spec.dtype)
    if spec.dtype in ("float32", "float16"):
        return np.asarray(x, dtype=spec.dtype)
    if np.issubdtype(np.asarray(x).dtype, np.integer) or spec.dtype == "bool":
        return np.asarray(x).astype(spec.dtype)
    raise RuntimeBackendError(
        f"input {spec.name!r} takes {spec.dtype} without quantization parameters; "
        "float data cannot be converted to it"
    )


def to_float(y: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Convert a raw model output to float32, dequantizing when ``spec`` is quantized."""
    if spec.dtype in _QUANTIZED and spec.quantization is not None:
        q = spec.quantization
        return (y.astype(np.float32) - np.float32(q.zero_point)) * np.float32(q.scale)
    return y.astype(np.float32)
