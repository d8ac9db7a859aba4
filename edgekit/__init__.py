"""edgekit: build per-device int8 bundles, run and benchmark them on boards, report over MQTT."""

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
