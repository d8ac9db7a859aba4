"""Where and how a client connects: address, TLS files and session options, checked together."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgekit.errors import MqttConfigError
from edgekit.mqtt.address import BrokerAddress
from edgekit.mqtt.session import SessionOptions
from edgekit.mqtt.tls import TlsFiles


@dataclass(frozen=True, kw_only=True, slots=True)
class BrokerSettings:
    """Everything a paho client is made from; build it with :meth:`from_url`."""

    address: BrokerAddress
    session: SessionOptions
    tls_files: TlsFiles = field(default_factory=TlsFiles)

    def __post_init__(self) -> None:
        given = self.tls_files.given
        if given and not self.address.tls:
            raise MqttConfigError(
                f"TLS files given for a plain mqtt:// broker ({self.address}): use mqtts://",
                setting=next(iter(given)),
            )

    @classmethod
    def from_url(
        cls, url: str, *, session: SessionOptions, tls_files: TlsFiles | None = None
    ) -> BrokerSettings:
        """Parse ``url`` (see :class:`BrokerAddress`) and check it with the rest."""
        return cls(
            address=BrokerAddress.parse(url),
            session=session,
            tls_files=tls_files if tls_files is not None else TlsFiles(),
        )

    @property
    def url(self) -> str:
        """The broker's URL without the password, for messages."""
        return self.address.url
