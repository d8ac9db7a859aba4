"""TLS for the paho clients of the board (reporter) and the collector, set up one way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.errors import ReporterError


def configure_tls(
    client: Any,
    *,
    where: str,
    ca_file: Path | None = None,
    certfile: Path | None = None,
    keyfile: Path | None = None,
) -> None:
    """Verify the broker against ``ca_file`` (system CAs when None) and present a client
    certificate when one is given; a missing or unreadable file is a ReporterError naming it."""
    try:
        client.tls_set(
            ca_certs=str(ca_file) if ca_file else None,
            certfile=str(certfile) if certfile else None,
            keyfile=str(keyfile) if keyfile else None,
        )
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ReporterError(f"cannot load the TLS files for {where}: {exc}") from exc
