"""edgekit's exceptions: one tree, so callers can catch as broadly or narrowly as they need.

    EdgekitError                      every error edgekit raises on purpose
    ├── MissingDependencyError        an optional package (an extra) is not installed
    ├── ConfigError                   a setting (flag, EDGEKIT_* variable, config file) is invalid
    ├── ProfileError                  unknown profile, bad TOML, unknown or mistyped key
    ├── DataError                     calibration or eval data missing, empty or not fitting
    ├── ConversionError               a model cannot be loaded, converted or quantized
    ├── BundleError                   a bundle cannot be written or read
    │   └── BundleIntegrityError      a file's digest does not match the manifest
    ├── RuntimeBackendError           an interpreter cannot load or run a model
    ├── PayloadError                  an MQTT payload or topic is not a valid report
    ├── MqttError                     talking to an MQTT broker failed
    │   ├── MqttConfigError           a broker URL, session option or TLS file is unusable
    │   │                             (also a ConfigError)
    │   ├── ReporterError             the board's reporter cannot connect or publish
    │   └── CollectorError            the collector cannot connect, subscribe or keep running
    ├── OutboxError                   the board's outbox file cannot be opened, read or written
    ├── StoreError                    the collector's database failed
    └── DeployError                   a bundle cannot be fetched, installed or rolled out

Library errors (TensorFlow, ONNX Runtime, paho, SQLAlchemy) are translated where edgekit calls them,
with ``raise ... from exc``. The CLI turns any ``EdgekitError`` into one line and exit code 2.
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Root of every error edgekit raises on purpose."""


class MissingDependencyError(EdgekitError):
    """An optional dependency is not installed; the message names the extra to install."""


class ConfigError(EdgekitError):
    """A setting is invalid; the message names the setting and where it came from."""


class ProfileError(EdgekitError):
    """A device profile cannot be found, parsed or validated."""


class DataError(EdgekitError):
    """Calibration or evaluation data is missing, empty or does not fit the model."""


class ConversionError(EdgekitError):
    """A model cannot be loaded, converted or quantized."""


class BundleError(EdgekitError):
    """A bundle cannot be written or read."""


class BundleIntegrityError(BundleError):
    """A bundle's files do not match the digests in its manifest."""


class RuntimeBackendError(EdgekitError):
    """An interpreter backend cannot load or run a model."""


class PayloadError(EdgekitError):
    """A message payload or topic does not follow the wire schema."""


class MqttError(EdgekitError):
    """Talking to an MQTT broker failed."""


class MqttConfigError(MqttError, ConfigError):
    """A broker URL, session option or TLS file cannot be used; ``setting`` names which."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class ReporterError(MqttError):
    """The board's reporter cannot connect to the broker or publish."""


class CollectorError(MqttError):
    """The collector cannot connect, subscribe or keep running."""


class OutboxError(EdgekitError):
    """The board's durable outbox cannot be opened, read or written."""


class StoreError(EdgekitError):
    """The collector's database failed."""


class DeployError(EdgekitError):
    """A bundle cannot be fetched from its store, installed on a board or rolled out."""
