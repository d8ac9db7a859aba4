"""The MQTT layer every side shares: broker addresses, session options, TLS and the client factory.

The board's reporter (:mod:`edgekit.runtime.reporter`) and the collector
(:mod:`edgekit.collector`) keep their own lifecycles on top of it. Importing this package never
imports paho-mqtt; :func:`create_client` does.
"""

from edgekit.mqtt.address import SCHEMES, BrokerAddress, redact
from edgekit.mqtt.client import Will, connect_kwargs, create_client
from edgekit.mqtt.session import SessionKwargs, SessionOptions, check_client_id, check_prefix
from edgekit.mqtt.settings import BrokerSettings
from edgekit.mqtt.tls import TlsFiles, configure_tls

__all__ = [
    "SCHEMES",
    "BrokerAddress",
    "BrokerSettings",
    "SessionKwargs",
    "SessionOptions",
    "TlsFiles",
    "Will",
    "check_client_id",
    "check_prefix",
    "configure_tls",
    "connect_kwargs",
    "create_client",
    "redact",
]
