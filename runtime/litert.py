"""LiteRT (``ai-edge-litert``), the maintained TFLite interpreter: the primary backend."""

from __future__ import annotations

from pathlib import Path

from edgekit._optional import require
from edgekit.runtime.tflite_interpreter import InterpreterBackend


class LiteRTBackend(InterpreterBackend):
    """A ``.tflite`` model in LiteRT's interpreter (XNNPACK on CPU by default)."""

    name = "litert"

    def __init__(self, model: Path | bytes, *, threads: int = 1) -> None:
        module = require("ai_edge_litert.interpreter", extra="device", package="ai-edge-litert")
        self.version = _litert_version()
        super().__init__(model, threads=threads, interpreter_cls=module.Interpreter)


def _litert_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:
        return "unknown"
