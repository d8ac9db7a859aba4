"""The central collector: MQTT subscriber, NATS JetStream consumer, database store, embedded broker.

Installed with ``pip install 'edgekit[collector]'``. Importing this package imports SQLAlchemy;
paho-mqtt, nats-py and amqtt are imported when a collector or broker starts. :func:`serve` runs
the whole service (what ``edgekit collect`` does); :class:`Collector` is one subscriber;
:func:`serve_nats` is ``edgekit collect --nats``.
"""

from edgekit._optional import require

require("sqlalchemy", extra="collector", package="SQLAlchemy")

from edgekit.collector.embedded_broker import EmbeddedBroker  # noqa: E402
from edgekit.collector.nats_service import serve_nats  # noqa: E402
from edgekit.collector.nats_settings import (  # noqa: E402
    NatsCollectorSettings,
    StreamLayout,
    parse_servers,
)
from edgekit.collector.service import collector_settings, serve  # noqa: E402
from edgekit.collector.settings import (  # noqa: E402
    DEFAULT_BROKER_URL,
    CollectorSettings,
    collector_session,
)
from edgekit.collector.snapshot import FleetSnapshot  # noqa: E402
from edgekit.collector.stats import CollectorStats  # noqa: E402
from edgekit.collector.store import DEFAULT_DB_URL, BatchResult, Store  # noqa: E402
from edgekit.collector.subscriber import Collector  # noqa: E402

__all__ = [
    "DEFAULT_BROKER_URL",
    "DEFAULT_DB_URL",
    "BatchResult",
    "Collector",
    "CollectorSettings",
    "CollectorStats",
    "EmbeddedBroker",
    "FleetSnapshot",
    "NatsCollectorSettings",
    "Store",
    "StreamLayout",
    "collector_session",
    "collector_settings",
    "parse_servers",
    "serve",
    "serve_nats",
]
