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
) -> None:
    """Check every file of BUNDLE against its SHA-256 in manifest.json (exit 2 on mismatch)."""
    if bundle.is_file() and bundle.name.endswith((".tar.gz", ".tgz")):
        with tempfile.TemporaryDirectory(prefix="edgekit-verify-") as tmp:
            manifest = verify_bundle(extract_bundle(bundle, Path(tmp)))
    else:
        manifest = verify_bundle(bundle)
    typer.echo(f"ok: {bundle}: {manifest.bundle_id}, {len(manifest.files)} files verified")
