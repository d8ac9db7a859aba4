"""A bundle store: a directory of bundle archives addressed by the digest of their manifest.

    <root>/<bundle_digest>.tar.gz   the bundle, packed as edgekit.bundle.archive_bundle packs it
    <root>/<bundle_digest>.json     a StoredBundle: the archive's SHA-256 and size, id, profile

The digest is the SHA-256 of the bundle's ``manifest.json``, the one reports carry, so a digest
names one bundle everywhere. Entries are written once (staged beside, then renamed in) and never
change. Any web server that serves static files with Range requests can serve the directory;
``edgekit serve-bundles DIR`` does (:mod:`edgekit.bundle_server`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, ValidationError

from edgekit.bundle import (
    MANIFEST_NAME,
    archive_bundle,
    extract_bundle,
    sha256_file,
    verify_bundle,
)
from edgekit.deploy_wire import MAX_ARCHIVE_BYTES
from edgekit.errors import BundleError
from edgekit.manifest import Manifest
from edgekit.values import Frozen, Sha256

ARCHIVE_SUFFIX = ".tar.gz"
RECORD_SUFFIX = ".json"
# What a store's file names look like; anything else in the directory is not served.
STORE_NAME = re.compile(r"^([0-9a-f]{64})(\.tar\.gz|\.json)$")


class StoredBundle(Frozen):
    """What the store knows of one bundle: enough to tell a board what to fetch."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_id: Literal["edgekit.stored-bundle/1"] = Field(
        default="edgekit.stored-bundle/1", alias="schema"
    )
    bundle_digest: Sha256
    bundle_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    profile: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    archive_sha256: Sha256
    archive_size: Annotated[int, Field(ge=1, le=MAX_ARCHIVE_BYTES)]
    signing_key_id: str | None = None

    @property
    def archive_name(self) -> str:
        """The archive's file name in the store, and the last part of its URL."""
        return self.bundle_digest + ARCHIVE_SUFFIX

    def url(self, base: str) -> str:
        """Where a store served at ``base`` has the archive."""
        return f"{base.rstrip('/')}/{self.archive_name}"


def manifest_digest(bundle_dir: Path) -> str:
    """SHA-256 of a bundle's manifest.json: the digest that names the bundle."""
    return hashlib.sha256((bundle_dir / MANIFEST_NAME).read_bytes()).hexdigest()


class BundleStore:
    """A store directory; :meth:`add` puts bundles in, :meth:`get` says what it holds."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def archive_path(self, digest: str) -> Path:
        """Where the archive of ``digest`` is (or would be)."""
        return self.root / f"{digest}{ARCHIVE_SUFFIX}"

    def get(self, digest: str) -> StoredBundle | None:
        """The entry for ``digest``, or None; BundleError if its record is damaged."""
        record = self.root / f"{digest}{RECORD_SUFFIX}"
        if not record.is_file() or not self.archive_path(digest).is_file():
            return None
        try:
            return StoredBundle.model_validate_json(record.read_bytes())
        except (OSError, ValidationError) as exc:
            raise BundleError(f"bundle store {self.root}: damaged record {record.name}") from exc

    def entries(self) -> list[StoredBundle]:
        """Every bundle the store holds."""
        found = (STORE_NAME.match(p.name) for p in sorted(self.root.glob(f"*{RECORD_SUFFIX}")))
        return [entry for m in found if m and (entry := self.get(m.group(1))) is not None]

    def add(self, bundle: Path) -> StoredBundle:
        """Put a bundle (a directory, or a ``.tar.gz`` of one) into the store after checking every
        file against its manifest; the existing entry if the store holds it already."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".adding-", dir=self.root) as tmp:
                return self._add(bundle, Path(tmp))
        except OSError as exc:
            raise BundleError(
                f"cannot add {bundle} to the bundle store {self.root}: {exc}"
            ) from exc

    def _add(self, bundle: Path, work: Path) -> StoredBundle:
        if bundle.is_file():
            folder = extract_bundle(bundle, work / "unpacked")
            archive = bundle
        elif bundle.is_dir():
            folder, archive = bundle, None
        else:
            raise BundleError(f"bundle not found: {bundle}")
        manifest = verify_bundle(folder)
        digest = manifest_digest(folder)
        existing = self.get(digest)
        if existing is not None:
            if sha256_file(self.archive_path(digest)) != existing.archive_sha256:
                raise BundleError(
                    f"bundle store {self.root}: {existing.archive_name} no longer matches its "
                    "record (changed on disk); remove both files and add the bundle again"
                )
            return existing
        if archive is None:
            archive = archive_bundle(folder, work / f"{digest}{ARCHIVE_SUFFIX}")
        size = archive.stat().st_size
        if size > MAX_ARCHIVE_BYTES:
            raise BundleError(f"{bundle}: archive of {size} bytes exceeds {MAX_ARCHIVE_BYTES}")
        entry = _entry(manifest, digest, archive)
        staged = work / "staged.tar.gz"
        shutil.copyfile(archive, staged)
        _durable(staged)
        # The archive goes in first: a record is only ever seen beside its whole archive.
        os.replace(staged, self.archive_path(digest))
        record = work / "record.json"
        record.write_text(entry.model_dump_json(by_alias=True, indent=2) + "\n")
        _durable(record)
        os.replace(record, self.root / f"{digest}{RECORD_SUFFIX}")
        return entry


def _entry(manifest: Manifest, digest: str, archive: Path) -> StoredBundle:
    return StoredBundle(
        bundle_digest=digest,
        bundle_id=manifest.bundle_id,
        profile=manifest.profile.name,
        archive_sha256=sha256_file(archive),
        archive_size=archive.stat().st_size,
        signing_key_id=manifest.signing_key_id,
    )


def _durable(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())
