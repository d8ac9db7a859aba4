"""edgekit: build per-device int8 bundles, run and benchmark them on boards, report over MQTT."""

from edgekit._version import __version__
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
from edgekit.profiles import DeviceProfile, load_profile, shipped_profiles

__all__ = [
    "BundleError",
    "BundleIntegrityError",
    "ConversionError",
    "DataError",
    "DeviceProfile",
    "EdgekitError",
    "MissingDependencyError",
    "PayloadError",
    "ProfileError",
    "ReporterError",
    "RuntimeBackendError",
    "StoreError",
    "__version__",
    "load_profile",
    "shipped_profiles",
]
