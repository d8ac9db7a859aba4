"""Bundles on disk: writing them atomically, verifying every file against the manifest.

A bundle is a directory holding the model file(s), ``manifest.json``, a small eval sample and the
build report. ``verify_bundle`` is what the runtime calls before it loads anything.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import ValidationError

from edgekit.errors import BundleError, BundleIntegrityError
from edgekit.manifest import Manifest
from edgekit.signing import SIGNATURE_NAME, check_signature

MANIFEST_NAME = "manifest.json"
# A manifest is a few KB; anything far larger is not one and is not read into memory.
MAX_MANIFEST_BYTES = 1 << 20
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_bundle(
    out_dir: Path,
    files: Mapping[str, bytes | Path],
    manifest: Manifest,
    *,
    signer: Callable[[bytes], bytes] | None = None,
) -> Path:
    """Write ``files`` and ``manifest`` into ``out_dir``, replacing an earlier bundle there.

    ``signer`` turns the manifest's bytes into the content of ``manifest.sig``.

    The bundle is assembled in a sibling temporary directory and moved into place, so an
    interrupted build never leaves a half-written bundle behind. A non-empty directory that is not
    a bundle is never overwritten.
    """
    out_dir = out_dir.resolve()
    if out_dir.exists() and (not out_dir.is_dir() or _is_foreign(out_dir)):
        raise BundleError(
            f"refusing to overwrite {out_dir}: it exists and is not an edgekit bundle"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be copied and shared
    try:
        for name, content in files.items():
            target = staging / name
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            else:
                target.write_bytes(content)
        manifest_bytes = manifest.to_json().encode()
        (staging / MANIFEST_NAME).write_bytes(manifest_bytes)
        if signer is not None:
            (staging / SIGNATURE_NAME).write_bytes(signer(manifest_bytes))
        verify_bundle(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except OSError as exc:
        raise BundleError(f"cannot write bundle {out_dir}: {exc}") from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def check_out_dir(out_dir: Path, *, force: bool) -> None:
    """Refuse to build into ``out_dir`` when that would replace something: a bundle there is
    replaced only with ``force``, a non-empty folder that is not a bundle never."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise BundleError(f"{out_dir} exists and is not a directory; pick another --out")
    if not any(out_dir.iterdir()):
        return
    if _is_foreign(out_dir):
        raise BundleError(
            f"refusing to overwrite {out_dir}: it exists and is not an edgekit bundle"
        )
    if not force:
        raise BundleError(
            f"{out_dir} holds a bundle already; pass --force to replace it, or another --out"
        )


def _is_foreign(directory: Path) -> bool:
    return any(directory.iterdir()) and not (directory / MANIFEST_NAME).is_file()


def read_manifest(bundle_dir: Path) -> Manifest:
    """Parse and validate ``manifest.json`` of a bundle directory (digests are not checked)."""
    return _parse_manifest(_manifest_bytes(bundle_dir), bundle_dir / MANIFEST_NAME)


def _manifest_bytes(bundle_dir: Path) -> bytes:
    path = bundle_dir / MANIFEST_NAME
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle not found: {bundle_dir} is not a directory")
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is not a bundle: it has no {MANIFEST_NAME}")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
    return path.read_bytes()


def _parse_manifest(raw: bytes, path: Path) -> Manifest:
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise BundleError(f"{path}: invalid manifest at {where}: {first['msg']}") from exc


def verify_bundle(bundle_dir: Path, *, trust_key: Path | None = None) -> Manifest:
    """Check the signature (if any, or required by ``trust_key``) and every file of the bundle
    against the manifest; return the manifest if all match.

    Missing files, changed files and files the manifest does not list are all refused. With
    ``trust_key`` an unsigned bundle or one signed by another key is refused too.
    """
    raw = _manifest_bytes(bundle_dir)
    manifest = _parse_manifest(raw, bundle_dir / MANIFEST_NAME)
    check_signature(bundle_dir, raw, declared_key_id=manifest.signing_key_id, trusted=trust_key)
    present = {p.name for p in bundle_dir.iterdir()} - {MANIFEST_NAME, SIGNATURE_NAME}
    listed = set(manifest.files)
    if missing := sorted(listed - present):
        raise BundleIntegrityError(f"bundle {bundle_dir}: missing file(s) {', '.join(missing)}")
    if extra := sorted(present - listed):
        raise BundleIntegrityError(
            f"bundle {bundle_dir}: file(s) not in the manifest: {', '.join(extra)}"
        )
    for name, entry in manifest.files.items():
        path = bundle_dir / name
        if not path.is_file():
            raise BundleIntegrityError(f"bundle {bundle_dir}: {name} is not a regular file")
        if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
            raise BundleIntegrityError(
                f"bundle {bundle_dir}: {name} does not match its SHA-256 in the manifest "
                "(the file was changed or corrupted)"
            )
    referenced = [a.file for a in manifest.artifacts] + [manifest.preferred]
    referenced += [n for n in (manifest.eval_sample, manifest.build_report) if n]
    if unlisted := sorted(set(referenced) - listed):
        raise BundleIntegrityError(
            f"bundle {bundle_dir}: manifest refers to unlisted file(s) {', '.join(unlisted)}"
        )
    return manifest


def archive_bundle(bundle_dir: Path, archive: Path) -> Path:
    """Pack a bundle directory into a ``.tar.gz`` holding one top-level folder."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bundle_dir, arcname=bundle_dir.name)
    return archive


def extract_bundle(archive: Path, into: Path) -> Path:
    """Unpack a bundle archive safely (no links, no paths outside ``into``); return its folder."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            # Bundles hold regular files; tarfile can recurse forever or raise KeyError on links.
            if any(m.issym() or m.islnk() for m in members):
                raise BundleError(f"{archive}: a bundle archive holds no links")
            paths = [path for m in members if (path := Path(m.name)).parts]
            # The folder returned is the first part of every name: the data filter would strip a
            # leading "/" and allow a ".." staying inside ``into``, so it would point elsewhere.
            if any(path.is_absolute() or ".." in path.parts for path in paths):
                raise BundleError(f"{archive}: member names must be relative, without '..'")
            tops = {path.parts[0] for path in paths}
            if len(tops) != 1:
                raise BundleError(f"{archive}: a bundle archive holds exactly one folder")
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:  # zlib: corrupt gzip data
        raise BundleError(f"cannot unpack bundle archive {archive}: {exc}") from exc
    return into / tops.pop()
