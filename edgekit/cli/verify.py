"""``edgekit verify``: check a bundle's files against the digests in its manifest."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from edgekit.bundle import extract_bundle, verify_bundle


def verify(
    bundle: Annotated[
        Path, typer.Argument(help="Bundle directory or .tar.gz archive.", show_default=False)
    ],
    trust_key: Annotated[
        Path | None,
        typer.Option(
            envvar="EDGEKIT_TRUST_KEY",
            help="Also require a valid signature by this Ed25519 public key.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check every file of BUNDLE against its SHA-256 in manifest.json, and its signature with
    --trust-key (exit 2 on any mismatch)."""
    if bundle.is_file() and bundle.name.endswith((".tar.gz", ".tgz")):
        with tempfile.TemporaryDirectory(prefix="edgekit-verify-") as tmp:
            manifest = verify_bundle(extract_bundle(bundle, Path(tmp)), trust_key=trust_key)
    else:
        manifest = verify_bundle(bundle, trust_key=trust_key)
    signed = f", signed by key {manifest.signing_key_id}" if manifest.signing_key_id else ""
    trusted = " (trusted)" if trust_key is not None else ""
    typer.echo(
        f"ok: {bundle}: {manifest.bundle_id}, {len(manifest.files)} files verified{signed}{trusted}"
    )
