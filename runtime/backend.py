"""The ``Backend`` protocol every interpreter implements, and the way to open one by name.

Adding a backend means adding a module with a class that satisfies :class:`Backend` and one line
in ``_BACKENDS``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from edgekit.errors import RuntimeBackendError
from edgekit.manifest import TensorSpec

# backend name -> (module, class); imported only when asked for, so a board pays for one.
_BACKENDS: dict[str, tuple[str, str]] = {
    "litert": ("edgekit.runtime.litert", "LiteRTBackend"),
    "tflite-runtime": ("edgekit.runtime.tflite_runtime", "TFLiteRuntimeBackend"),
    "onnxruntime": ("edgekit.runtime.onnxruntime", "OnnxRuntimeBackend"),
}
# Which backends run which artifact format, best first; and the package each needs.
BACKENDS_FOR_FORMAT: dict[str, tuple[str, ...]] = {
    "tflite": ("litert", "tflite-runtime"),
    "onnx": ("onnxruntime",),
}
_PACKAGES = {
    "litert": "ai_edge_litert",
    "tflite-runtime": "tflite_runtime",
    "onnxruntime": "onnxruntime",
}
_DISTRIBUTIONS = {"litert": "ai-edge-litert", "tflite-runtime": "tflite-runtime",
                  "onnxruntime": "onnxruntime"}  # fmt: skip


class Backend(Protocol):
    """An interpreter holding one loaded model.

    ``invoke`` takes arrays already in the model's own dtypes (quantized where the model is) and
    returns the raw outputs; :class:`edgekit.runtime.predict.Predictor` does the float conversion.
    Implementations translate their library's errors into ``RuntimeBackendError``.
    """

    name: str
    version: str

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The model's inputs, batch axis first (None where it is dynamic)."""
        ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """The model's outputs."""
        ...

    def invoke(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the model once on ``inputs`` (one array per input) and return its outputs."""
        ...


def available_backends() -> list[str]:
    """Names of all backends edgekit knows, installed or not."""
    return sorted(_BACKENDS)


def installed_interpreters() -> tuple[str, ...]:
    """``name version`` of each backend installed here (versions from package metadata, so
    nothing is imported)."""
    from importlib import metadata

    found = []
    for name in sorted(_BACKENDS):
        if not installed(name):
            continue
        try:
            version = metadata.version(_DISTRIBUTIONS[name])
        except metadata.PackageNotFoundError:  # another distribution (onnxruntime-gpu, ...)
            version = "unknown"
        found.append(f"{name} {version}")
    return tuple(found)


def installed(name: str) -> bool:
    """True when the package behind backend ``name`` can be imported (checked without
    importing it: finding a module does not load the interpreter)."""
    return importlib.util.find_spec(_PACKAGES[name]) is not None


def open_backend(name: str, model: Path | bytes, *, threads: int = 1) -> Backend:
    """Load ``model`` into the backend called ``name``."""
    if name not in _BACKENDS:
        known = ", ".join(available_backends())
        raise RuntimeBackendError(f"unknown backend {name!r}; known backends: {known}")
    module_name, class_name = _BACKENDS[name]
    backend_cls = getattr(importlib.import_module(module_name), class_name)
    backend: Backend = backend_cls(model, threads=threads)
    return backend
