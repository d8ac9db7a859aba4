"""The central collector: MQTT subscriber, database store, embedded broker.

Installed with ``pip install 'edgekit[collector]'``. Importing this package imports SQLAlchemy;
paho-mqtt and amqtt are imported when a collector or broker starts.
"""

from edgekit._optional import require

require("sqlalchemy", extra="collector", package="SQLAlchemy")

from edgekit.collector.broker_url import BrokerUrl  # noqa: E402
from edgekit.collector.embedded_broker import EmbeddedBroker  # noqa: E402
from edgekit.collector.snapshot import FleetSnapshot  # noqa: E402
from edgekit.collector.store import DEFAULT_DB_URL, BatchResult, Store  # noqa: E402
from edgekit.collector.subscriber import (  # noqa: E402
    Collector,
    CollectorSettings,
    CollectorStats,
)

__all__ = [
    "DEFAULT_DB_URL",
    "BatchResult",
    "BrokerUrl",
    "Collector",
    "CollectorSettings",
    "CollectorStats",
    "EmbeddedBroker",
    "FleetSnapshot",
    "Store",
]
