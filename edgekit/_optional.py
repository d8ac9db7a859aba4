"""Lazy imports of heavy optional packages, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from edgekit.errors import MissingDependencyError


def require(module: str, *, extra: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise MissingDependencyError telling which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = package or module.split(".")[0]
        raise MissingDependencyError(
            f"{name} is not installed; install it with: pip install 'edgekit[{extra}]'"
        ) from exc
