"""TLS for every paho client edgekit makes (the board's reporter, the collector): one set-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.errors import MqttConfigError


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """mqtts:// only: a CA to verify the broker (system CAs when None) and an optional client
    certificate with its key, for brokers that authenticate clients by certificate."""

    ca_file: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None

    def __post_init__(self) -> None:
        for name in ("ca_file", "certfile", "keyfile"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if self.keyfile is not None and self.certfile is None:
            raise MqttConfigError("a client keyfile without its certfile", setting="keyfile")

    @property
    def given(self) -> dict[str, Path]:
        """The files set, by setting name."""
        named = {"ca_file": self.ca_file, "certfile": self.certfile, "keyfile": self.keyfile}
        return {name: path for name, path in named.items() if path is not None}


def configure_tls(client: Any, files: TlsFiles, *, where: str) -> None:
    """Verify the broker against ``files.ca_file`` (system CAs when None) and present a client
    certificate when one is given; an unreadable file is an MqttConfigError naming it."""
    for name, path in files.given.items():
        try:
            path.open("rb").close()
        except OSError as exc:
            raise MqttConfigError(
                f"cannot load the TLS files for {where}: {name} {path}: {exc.strerror or exc}",
                setting=name,
            ) from exc
    try:
        client.tls_set(
            ca_certs=str(files.ca_file) if files.ca_file else None,
            certfile=str(files.certfile) if files.certfile else None,
            keyfile=str(files.keyfile) if files.keyfile else None,
        )
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise MqttConfigError(f"cannot load the TLS files for {where}: {exc}") from exc
