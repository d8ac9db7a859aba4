"""``edgekit keygen``: an Ed25519 key pair for signing bundles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def keygen(
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Path stem: writes STEM.key (private, mode 600) and STEM.pub."
        ),
    ] = Path("edgekit-signing"),
) -> None:
    """Create a key pair: sign bundles with the .key on the workstation (build --sign-key), give
    boards the .pub (run/daemon --trust-key)."""
    from edgekit.signing import generate_keypair, key_id, load_public_key

    private, public = generate_keypair(out)
    typer.echo(
        f"private key: {private}\npublic key: {public}\nkey id: {key_id(load_public_key(public))}"
    )
