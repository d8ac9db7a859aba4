"""edgekit: build per-device int8 bundles, run and benchmark them on boards, report over MQTT.

    report = edgekit.build("model.keras", profile="rpi4", calibration="calib.npz",
                           eval="eval.npz")                      # or an nn.Module
    session = edgekit.DeviceSession.open(Path(report.bundle_dir))  # on the board
    probabilities = session.predict(images)
    edgekit.serve("sqlite:///fleet.db", broker="mqtt://broker:1883")  # the collector

The names in ``__all__`` are the public API; every other module is internal and may change.
They load on first use (PEP 562), so ``import edgekit`` (as every command does) costs nothing
until one is needed: ``edgekit --help`` loads neither pydantic models nor TensorFlow.
"""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from edgekit._version import __version__
    from edgekit.bundle import verify_bundle
    from edgekit.collector.service import serve
    from edgekit.collector.store import Store
    from edgekit.converters.api import build
    from edgekit.converters.pipeline import BuildRequest
    from edgekit.converters.report import BuildReport
    from edgekit.errors import (
        BundleError,
        BundleIntegrityError,
        CollectorError,
        ConfigError,
        ConversionError,
        DataError,
        DeployError,
        EdgekitError,
        MissingDependencyError,
        MqttConfigError,
        MqttError,
        OutboxError,
        PayloadError,
        ProfileError,
        ReporterError,
        RuntimeBackendError,
        StoreError,
    )
    from edgekit.manifest import Manifest
    from edgekit.profiles import DeviceProfile, load_profile, shipped_profiles
    from edgekit.runtime.session import DeviceSession
    from edgekit.schema import Report, parse_report

_ERRORS = (
    "BundleError",
    "BundleIntegrityError",
    "CollectorError",
    "ConfigError",
    "ConversionError",
    "DataError",
    "DeployError",
    "EdgekitError",
    "MissingDependencyError",
    "MqttConfigError",
    "MqttError",
    "OutboxError",
    "PayloadError",
    "ProfileError",
    "ReporterError",
    "RuntimeBackendError",
    "StoreError",
)
# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(_ERRORS, "edgekit.errors"),
    "BuildReport": "edgekit.converters.report",
    "BuildRequest": "edgekit.converters.pipeline",
    "DeviceProfile": "edgekit.profiles",
    "DeviceSession": "edgekit.runtime.session",
    "Manifest": "edgekit.manifest",
    "Report": "edgekit.schema",
    "Store": "edgekit.collector.store",
    "__version__": "edgekit._version",
    "build": "edgekit.converters.api",
    "load_profile": "edgekit.profiles",
    "parse_report": "edgekit.schema",
    "serve": "edgekit.collector.service",
    "shipped_profiles": "edgekit.profiles",
    "verify_bundle": "edgekit.bundle",
}

__all__ = [
    "BuildReport",
    "BuildRequest",
    "BundleError",
    "BundleIntegrityError",
    "CollectorError",
    "ConfigError",
    "ConversionError",
    "DataError",
    "DeployError",
    "DeviceProfile",
    "DeviceSession",
    "EdgekitError",
    "Manifest",
    "MissingDependencyError",
    "MqttConfigError",
    "MqttError",
    "OutboxError",
    "PayloadError",
    "ProfileError",
    "Report",
    "ReporterError",
    "RuntimeBackendError",
    "Store",
    "StoreError",
    "__version__",
    "build",
    "load_profile",
    "parse_report",
    "serve",
    "shipped_profiles",
    "verify_bundle",
]


def __getattr__(name: str) -> _Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
