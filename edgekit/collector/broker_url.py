"""Where the collector's MQTT broker is: ``mqtt://[user[:password]@]host[:port]``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from edgekit.errors import ReporterError

_DEFAULT_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883}


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """A parsed broker address; ``tls`` for mqtts:// (system CA certificates)."""

    host: str
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if not self.host:
            raise ReporterError("broker host is empty")
        if not 0 < self.port < 65536:
            raise ReporterError(f"broker port {self.port} is not in 1..65535")

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        """Parse ``mqtt://host:port`` (also mqtts://, tcp://, or a bare ``host[:port]``)."""
        text = url.strip()
        if "://" not in text:
            text = "mqtt://" + text
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ReporterError(f"not a broker URL: {url!r} ({exc})") from exc
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ReporterError(
                f"not a broker URL: {url!r} (scheme must be one of {', '.join(_DEFAULT_PORTS)})"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ReporterError(f"not a broker URL: {url!r} (no path or query expected)")
        return cls(
            host=parts.hostname or "",
            port=port or _DEFAULT_PORTS[scheme],
            tls=scheme in ("mqtts", "ssl"),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:
        """The address without the password, for messages."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"
