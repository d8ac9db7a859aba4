"""edgekit: build per-device int8 bundles, run and benchmark them on boards, report over MQTT.

The public names load on first use (PEP 562), so importing ``edgekit`` (as every command does)
costs nothing until one of them is needed: ``edgekit --help`` never loads pydantic models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgekit._version import __version__
    from edgekit.bundle import verify_bundle
    from edgekit.errors import (
        BundleError,
        BundleIntegrityError,
        ConversionError,
        DataError,
        EdgekitError,
        MissingDependencyError,
        PayloadError,
        ProfileError,
        ReporterError,
        RuntimeBackendError,
        StoreError,
    )
    from edgekit.manifest import Manifest
    from edgekit.profiles import DeviceProfile, load_profile, shipped_profiles
    from edgekit.schema import Report, parse_report

_ERRORS = (
    "BundleError",
    "BundleIntegrityError",
    "ConversionError",
    "DataError",
    "EdgekitError",
    "MissingDependencyError",
    "PayloadError",
    "ProfileError",
    "ReporterError",
    "RuntimeBackendError",
    "StoreError",
)
# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(_ERRORS, "edgekit.errors"),
    "DeviceProfile": "edgekit.profiles",
    "Manifest": "edgekit.manifest",
    "Report": "edgekit.schema",
    "__version__": "edgekit._version",
    "load_profile": "edgekit.profiles",
    "parse_report": "edgekit.schema",
    "shipped_profiles": "edgekit.profiles",
    "verify_bundle": "edgekit.bundle",
}

__all__ = [
    "BundleError",
    "BundleIntegrityError",
    "ConversionError",
    "DataError",
    "DeviceProfile",
    "EdgekitError",
    "Manifest",
    "MissingDependencyError",
    "PayloadError",
    "ProfileError",
    "Report",
    "ReporterError",
    "RuntimeBackendError",
    "StoreError",
    "__version__",
    "load_profile",
    "parse_report",
    "shipped_profiles",
    "verify_bundle",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
