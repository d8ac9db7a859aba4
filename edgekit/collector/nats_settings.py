"""How a collector consumes from NATS JetStream: the servers, the stream layout and the consumer.

``--nats nats://h1:4222,nats://h2:4222`` names several servers of one cluster; the client picks
one and moves to another when it dies. ``tls://`` asks for TLS (so does any TLS file). The
password in a URL never appears in a message: everything shown goes through ``redact``.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field

from edgekit.collector.nats_subjects import topic_to_subject
from edgekit.errors import ConfigError
from edgekit.mqtt import TlsFiles, check_prefix, redact
from edgekit.schema import DEFAULT_PREFIX
from edgekit.vocab import StreamRetention

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_STREAM = "EDGEKIT"
DEFAULT_DURABLE = "collector"
_SCHEMES = {"nats": False, "tls": True}
# JetStream names become subject tokens and file names: no separators, wildcards or spaces.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class NatsServer:
    """One server URL of the cluster; build it with :meth:`parse`."""

    host: str
    port: int = 4222
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> NatsServer:
        """Parse ``nats://[user[:password]@]host[:port]`` (or ``tls://``)."""
        text = url.strip()
        shown = redact(text)
        try:
            parts = urllib.parse.urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"setting 'nats': {shown!r} is malformed: {exc}") from exc
        scheme = parts.scheme.lower() if "://" in text else ""
        if scheme not in _SCHEMES:
            raise ConfigError(
                f"setting 'nats': {shown!r} must start with nats:// or tls://"
                + (f", not {scheme}://" if scheme else "")
            )
        if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(
                f"setting 'nats': {shown!r} must be nats://[user[:password]@]host[:port]"
            )
        if parts.password is not None and not parts.username:
            raise ConfigError(f"setting 'nats': {shown!r} has a password without a user name")
        return cls(
            host=parts.hostname,
            port=4222 if port is None else port,
            tls=_SCHEMES[scheme],
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password is not None else None,
        )

    @property
    def url(self) -> str:
        """The URL without the password, for messages."""
        user = f"{urllib.parse.quote(self.username, safe='')}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'tls' if self.tls else 'nats'}://{user}{host}:{self.port}"

    @property
    def connect_url(self) -> str:
        """The URL with the credentials, for the client only."""
        if self.username is None:
            return self.url
        secret = f":{urllib.parse.quote(self.password, safe='')}" if self.password else ""
        user = urllib.parse.quote(self.username, safe="")
        return self.url.replace(f"{user}@", f"{user}{secret}@", 1)


def parse_servers(text: str) -> tuple[NatsServer, ...]:
    """The comma-separated server URLs of ``--nats``; ConfigError naming the bad one."""
    urls = [part for part in (p.strip() for p in text.split(",")) if part]
    if not urls:
        raise ConfigError("setting 'nats': no server URL given (nats://host:4222,...)")
    return tuple(NatsServer.parse(url) for url in urls)


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamLayout:
    """The streams and the one durable consumer every collector of a fleet shares.

    ``$MQTT_msgs`` is where nats-server stores each QoS 1 publish before it sends the PUBACK;
    the collector's stream (``stream``) sources the report and status subjects from it, and
    ``mqtt_buffer_s`` is how long ``$MQTT_msgs`` keeps them (only until they are sourced, in
    practice). ``poison_after`` deliveries without a commit make a message a rejection.
    """

    stream: str = DEFAULT_STREAM
    durable: str = DEFAULT_DURABLE
    prefix: str = DEFAULT_PREFIX
    replicas: int = 3
    retention: StreamRetention = StreamRetention.LIMITS
    max_age_s: float = 7 * _DAY_S
    max_bytes: int | None = None
    mqtt_buffer_s: float = 3600.0
    ack_wait_s: float = 30.0
    max_ack_pending: int = 20_000
    poison_after: int = 5
    max_deliver: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(self, "retention", StreamRetention(self.retention))
        for name in ("stream", "durable"):
            if not _NAME.match(getattr(self, name)):
                raise ConfigError(
                    f"setting '{name}': {getattr(self, name)!r} must be 1-64 letters, digits, "
                    "'-' or '_'"
                )
        try:
            check_prefix(self.prefix)
        except ConfigError as exc:
            raise ConfigError(f"setting 'prefix': {exc}") from None
        topic_to_subject(self.prefix)  # whitespace is refused here, not by the server later
        _check(1 <= self.replicas <= 5, "replicas", f"must be 1..5, not {self.replicas}")
        _check(self.max_age_s > 0, "max_age", f"must be > 0 s, not {self.max_age_s}")
        _check(self.mqtt_buffer_s > 0, "mqtt_buffer", f"must be > 0 s, not {self.mqtt_buffer_s}")
        _check(self.max_bytes is None or self.max_bytes > 0, "max_bytes", "must be > 0")
        _check(self.ack_wait_s >= 1, "ack_wait", f"must be at least 1 s, not {self.ack_wait_s}")
        _check(self.max_ack_pending >= 1, "max_ack_pending", "must be at least 1")
        _check(
            4 <= self.poison_after < self.max_deliver,
            "poison_after",
            f"must be 4..{self.max_deliver - 1} (below max_deliver {self.max_deliver})",
        )

    @property
    def subject_prefix(self) -> str:
        """The topic prefix as nats-server spells it in subjects (``edgekit.v1``)."""
        return topic_to_subject(self.prefix)

    @property
    def subjects(self) -> tuple[str, str]:
        """The report and status subjects the stream holds."""
        return (f"{self.subject_prefix}.*.report", f"{self.subject_prefix}.*.status")


@dataclass(frozen=True, kw_only=True, slots=True)
class NatsCollectorSettings:
    """Everything one collector process needs to consume; every wait is bounded."""

    servers: tuple[NatsServer, ...]
    layout: StreamLayout = field(default_factory=StreamLayout)
    tls_files: TlsFiles = field(default_factory=TlsFiles)
    batch_size: int = 1000
    connect_timeout_s: float = 10.0
    # How long one fetch waits for messages: also how often a stop request is noticed.
    fetch_wait_s: float = 1.0
    store_retry_max_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.servers:
            raise ConfigError("setting 'nats': no server URL given")
        _check(
            1 <= self.batch_size <= 100_000,
            "batch_size",
            f"must be 1..100000, not {self.batch_size}",
        )
        _check(
            self.batch_size <= self.layout.max_ack_pending,
            "batch_size",
            f"must not exceed max_ack_pending ({self.layout.max_ack_pending})",
        )
        _check(self.connect_timeout_s > 0, "connect_timeout", "must be > 0 s")
        _check(self.fetch_wait_s > 0, "fetch_wait", "must be > 0 s")
        _check(self.store_retry_max_s > 0, "store_retry_max", "must be > 0 s")

    @property
    def tls(self) -> bool:
        """Whether to speak TLS: a tls:// URL or any TLS file asks for it."""
        return any(s.tls for s in self.servers) or bool(self.tls_files.given)

    @property
    def where(self) -> str:
        """The servers without passwords, for messages."""
        return ",".join(s.url for s in self.servers)


def _check(ok: bool, setting: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"setting '{setting}' {problem}")
