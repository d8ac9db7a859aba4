"""LiteRT (``ai-edge-litert``), the maintained TFLite interpreter: the primary backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit._optional import require
from edgekit.runtime.tflite_interpreter import InterpreterBackend


class LiteRTBackend(InterpreterBackend):
    """A ``.tflite`` model in LiteRT's interpreter (XNNPACK on CPU by default)."""

    name = "litert"

    def __init__(self, model: Path | bytes, *, threads: int = 1) -> None:
        self.version = _litert_version()
        super().__init__(model, threads=threads, interpreter_cls=interpreter_class())


def interpreter_class() -> Any:
    """LiteRT's ``Interpreter`` class."""
    module = require("ai_edge_litert.interpreter", extra="device", package="ai-edge-litert")
    return module.Interpreter


def op_resolver_type(name: str) -> Any:
    """A member of LiteRT's ``OpResolverType`` by name."""
    module = require("ai_edge_litert.interpreter", extra="device", package="ai-edge-litert")
    return getattr(module.OpResolverType, name)


def _litert_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:
        return "unknown"
