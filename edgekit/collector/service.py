"""The collector as a service: one function that ``edgekit collect`` and ``edgekit demo`` call.

It decides the set-up once: an embedded broker (amqtt, MQTT 3.1.1, no shared subscriptions) or
an external one; one collector in this process or several worker processes in a share group;
the client ids their persistent sessions use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Unpack

from edgekit.collector.embedded_broker import EmbeddedBroker
from edgekit.collector.settings import (
    DEFAULT_BROKER_URL,
    CollectorSettings,
    collector_session,
    default_client_id,
)
from edgekit.collector.stats import CollectorStats
from edgekit.collector.store import DEFAULT_DB_URL, Store
from edgekit.collector.subscriber import Collector, StopFlag
from edgekit.collector.workers import run_workers
from edgekit.errors import CollectorError
from edgekit.mqtt import BrokerSettings, SessionKwargs, TlsFiles
from edgekit.vocab import MqttVersion

# The share group several worker processes use when none is given.
DEFAULT_SHARE_GROUP = "edgekit"


def collector_settings(
    broker: str = DEFAULT_BROKER_URL,
    *,
    client_id: str | None = None,
    share_group: str | None = None,
    workers: int = 1,
    embedded_broker: bool = False,
    tls_files: TlsFiles | None = None,
    batch_size: int = CollectorSettings.batch_size,
    **session: Unpack[SessionKwargs],
) -> CollectorSettings:
    """The settings :func:`serve` runs with; MqttConfigError or CollectorError if they cannot
    work together. ``session`` overrides the collector's session options (prefix, MQTT version,
    timeouts)."""
    if embedded_broker:
        if share_group is not None or workers > 1:
            raise CollectorError(
                "a share group (--share) or several workers (--workers) need a broker with "
                "shared subscriptions, not the embedded one (--embedded-broker)"
            )
        session["mqtt_version"] = MqttVersion.V311  # amqtt speaks MQTT 3.1.1 only
    if workers < 1:
        raise CollectorError(f"workers must be at least 1, not {workers}")
    if workers > 1 and share_group is None:
        share_group = DEFAULT_SHARE_GROUP
    options = collector_session(client_id or default_client_id(share_group), **session)
    return CollectorSettings(
        broker=BrokerSettings.from_url(broker, session=options, tls_files=tls_files),
        share_group=share_group,
        batch_size=batch_size,
    )


def serve(
    db_url: str = DEFAULT_DB_URL,
    *,
    broker: str = DEFAULT_BROKER_URL,
    client_id: str | None = None,
    share_group: str | None = None,
    workers: int = 1,
    embedded_broker: bool = False,
    tls_files: TlsFiles | None = None,
    batch_size: int = CollectorSettings.batch_size,
    duration_s: float | None = None,
    stop: StopFlag | None = None,
    on_started: Callable[[str], None] | None = None,
    **session: Unpack[SessionKwargs],
) -> CollectorStats:
    """Collect into ``db_url`` until ``duration_s`` has passed or ``stop`` is set; the counts.

    ``on_started`` is told what is being collected from where, once everything is subscribed.
    Settings are as :func:`collector_settings`; the database is opened first, so a bad URL is
    reported before anything connects.
    """
    settings = collector_settings(
        broker,
        client_id=client_id,
        share_group=share_group,
        workers=workers,
        embedded_broker=embedded_broker,
        tls_files=tls_files,
        batch_size=batch_size,
        **session,
    )
    tell = on_started or (lambda _message: None)
    with Store(db_url) as store:
        where = f"{settings.report_filter} from {settings.broker.url} into {store.display_url}"
        if workers > 1:
            store.close()
            return run_workers(
                settings,
                db_url,
                workers=workers,
                duration_s=duration_s,
                stop=stop,
                on_started=lambda: tell(f"collecting {where} with {workers} processes"),
            )
        with _embedded(settings, enabled=embedded_broker), Collector(settings, store) as collector:
            tell(f"collecting {where}")
            collector.run(duration_s=duration_s, stop=stop)
        return collector.stats


@contextlib.contextmanager
def _embedded(settings: CollectorSettings, *, enabled: bool) -> Iterator[None]:
    """An embedded broker on the settings' host and port for the duration, if ``enabled``."""
    if not enabled:
        yield
        return
    address = settings.broker.address
    with EmbeddedBroker(address.port, host=address.host):
        yield
