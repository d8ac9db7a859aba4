"""ONNX Runtime backend: ``.onnx`` models (float or QDQ int8) on the CPU execution provider."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.errors import RuntimeBackendError
from edgekit.manifest import TensorSpec

# ONNX element types as ORT names them -> numpy dtype names.
_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


class OnnxRuntimeBackend:
    """A model in an ONNX Runtime ``InferenceSession``; ``threads`` sets intra-op threads."""

    name = "onnxruntime"

    def __init__(self, model: Path | bytes, *, threads: int = 1) -> None:
        ort = require("onnxruntime", extra="device")
        try:
            self.version = version("onnxruntime")
        except PackageNotFoundError:
            self.version = getattr(ort, "__version__", "unknown")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only; warnings about unused initializers are noise
        try:
            self._session = ort.InferenceSession(
                model if isinstance(model, bytes) else str(model),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # ORT raises its own pybind error types
            what = "model" if isinstance(model, bytes) else str(model)
            raise RuntimeBackendError(f"onnxruntime cannot load {what}: {_first(exc)}") from exc
        self._inputs = tuple(_spec(i) for i in self._session.get_inputs())
        self._outputs = tuple(_spec(o) for o in self._session.get_outputs())
        self.threads = threads

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def invoke(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(inputs) != len(self._inputs):
            raise RuntimeBackendError(
                f"model takes {len(self._inputs)} input(s), got {len(inputs)}"
            )
        feed = {spec.name: array for spec, array in zip(self._inputs, inputs, strict=True)}
        try:
            return list(self._session.run(None, feed))
        except Exception as exc:
            raise RuntimeBackendError(f"onnxruntime inference failed: {_first(exc)}") from exc


def _spec(node: Any) -> TensorSpec:
    dtype = _TYPES.get(node.type)
    if dtype is None:
        raise RuntimeBackendError(f"tensor {node.name!r} has unsupported type {node.type}")
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in node.shape)
    return TensorSpec(name=node.name, shape=shape, dtype=dtype)


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
