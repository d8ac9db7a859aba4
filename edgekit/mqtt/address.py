"""Where a broker is: ``scheme://[user[:password]@]host[:port]``, parsed one way for every side.

One scheme table decides plain or TLS and the default port. The password never appears in a
message, a ``str()`` or a ``repr()``: everything shown goes through :func:`redact`.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import NamedTuple

from edgekit.errors import MqttConfigError


class Scheme(NamedTuple):
    """What a URL scheme means: TLS or not, and the port used when the URL names none."""

    tls: bool
    default_port: int


SCHEMES: dict[str, Scheme] = {
    "mqtt": Scheme(tls=False, default_port=1883),
    "mqtts": Scheme(tls=True, default_port=8883),
    "tcp": Scheme(tls=False, default_port=1883),
    "ssl": Scheme(tls=True, default_port=8883),
}
_NAMES = [f"{name}://" for name in SCHEMES]
_SCHEME_LIST = f"{', '.join(_NAMES[:-1])} or {_NAMES[-1]}"


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """A parsed broker address; build it with :meth:`parse`."""

    host: str
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.host:
            raise MqttConfigError(f"broker URL {self.url!r} has no host", setting="broker")
        if not 1 <= self.port <= 65535:
            raise MqttConfigError(
                f"broker URL {self.url!r}: port {self.port} is not between 1 and 65535",
                setting="broker",
            )
        if self.password is not None and self.username is None:
            raise MqttConfigError(
                f"broker URL {self.url!r} has a password without a username", setting="broker"
            )

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse ``mqtt://[user[:password]@]host[:port]`` (mqtts://, tcp://, ssl:// alike)."""
        text = url.strip()
        shown = redact(text)
        scheme_given = text.partition("://")[0] if "://" in text else None
        try:
            parts = urllib.parse.urlsplit(text)
        except ValueError as exc:  # an unbalanced IPv6 bracket
            raise MqttConfigError(
                f"broker URL {shown!r} is malformed: {exc}", setting="broker"
            ) from exc
        scheme = SCHEMES.get(parts.scheme.lower()) if scheme_given is not None else None
        if scheme is None:
            raise MqttConfigError(
                f"broker URL {shown!r} must start with {_SCHEME_LIST}"
                + (f", not {scheme_given}://" if scheme_given else ""),
                setting="broker",
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise MqttConfigError(
                f"broker URL {shown!r} must be scheme://[user[:password]@]host[:port] with no "
                "path, query or fragment (TLS files are separate settings)",
                setting="broker",
            )
        if not parts.hostname:
            raise MqttConfigError(f"broker URL {shown!r} has no host", setting="broker")
        try:
            port = parts.port
        except ValueError as exc:
            raise MqttConfigError(
                f"broker URL {shown!r} has a bad port: {str(exc).removeprefix('Port ')}",
                setting="broker",
            ) from exc
        return cls(
            host=parts.hostname,
            port=scheme.default_port if port is None else port,
            tls=scheme.tls,
            # mqtt://:pw@host has an empty user name: treated as none, so it is refused.
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password is not None else None,
        )

    @property
    def url(self) -> str:
        """The address without the password, for messages: ``mqtt[s]://[user@]host:port``."""
        user = f"{urllib.parse.quote(self.username, safe='')}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        secret = ", password='***'" if self.password is not None else ""
        return f"BrokerAddress({self.url!r}{secret})"


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages about URLs that do not parse."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"
