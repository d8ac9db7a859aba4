"""tflite-runtime, the older standalone TFLite interpreter (boards stuck on numpy < 2)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from edgekit._optional import require
from edgekit.runtime.tflite_interpreter import InterpreterBackend


class TFLiteRuntimeBackend(InterpreterBackend):
    """A ``.tflite`` model in tflite-runtime's interpreter."""

    name = "tflite-runtime"

    def __init__(self, model: Path | bytes, *, threads: int = 1) -> None:
        module = require(
            "tflite_runtime.interpreter", extra="device-legacy", package="tflite-runtime"
        )
        try:
            self.version = version("tflite-runtime")
        except PackageNotFoundError:
            self.version = "unknown"
        super().__init__(model, threads=threads, interpreter_cls=module.Interpreter)
