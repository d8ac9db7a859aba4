"""Signed bundles: an Ed25519 signature over ``manifest.json``, which holds every file's digest.

    edgekit keygen --out keys/fleet             # keys/fleet.key (private), keys/fleet.pub
    edgekit build ... --sign-key keys/fleet.key   # bundle/manifest.sig
    edgekit run bundle --trust-key keys/fleet.pub # refuses unsigned or foreign-signed bundles

The signature lives beside the manifest in ``manifest.sig``. The manifest itself names the key
that signed it, so a bundle whose signature was stripped is refused even without a trusted key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from edgekit._optional import require
from edgekit.errors import BundleError, BundleIntegrityError

SIGNATURE_NAME = "manifest.sig"
SIGNATURE_SCHEMA = "edgekit.signature/1"
# Key files are a few hundred bytes; anything much larger is not a key.
MAX_KEY_BYTES = 16 * 1024


def _crypto() -> Any:
    return require(
        "cryptography.hazmat.primitives.asymmetric.ed25519", extra="device", package="cryptography"
    )


def _serialization() -> Any:
    return require(
        "cryptography.hazmat.primitives.serialization", extra="device", package="cryptography"
    )


def generate_keypair(stem: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: ``<stem>.key`` (private, mode 600) and ``<stem>.pub``."""
    ser = _serialization()
    private = _crypto().Ed25519PrivateKey.generate()
    key_path, pub_path = stem.with_name(stem.name + ".key"), stem.with_name(stem.name + ".pub")
    for path in (key_path, pub_path):
        if path.exists():
            raise BundleError(f"refusing to overwrite existing key file {path}")
    stem.parent.mkdir(parents=True, exist_ok=True)
    pem = private.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub_path.write_bytes(
        private.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    )
    return key_path, pub_path


def key_id(public_key: Any) -> str:
    """A short fingerprint of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    ser = _serialization()
    raw = public_key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(path: Path) -> Any:
    """An Ed25519 private key from a PEM file."""
    data = _read_key(path)
    try:
        key = _serialization().load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, _crypto().Ed25519PrivateKey):
        raise BundleError(f"{path} is not an Ed25519 key (edgekit signs with Ed25519)")
    return key


def load_public_key(path: Path) -> Any:
    """An Ed25519 public key from a PEM file."""
    data = _read_key(path)
    try:
        key = _serialization().load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path} is not a PEM public key: {exc}") from exc
    if not isinstance(key, _crypto().Ed25519PublicKey):
        raise BundleError(f"{path} is not an Ed25519 public key")
    return key


def _read_key(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_KEY_BYTES:
            raise BundleError(f"{path} is too large to be a key file")
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read key file {path}: {exc.strerror or exc}") from exc


def signature_file(manifest_bytes: bytes, private_key: Any) -> bytes:
    """The content of ``manifest.sig`` for these exact manifest bytes."""
    record = {
        "schema": SIGNATURE_SCHEMA,
        "algorithm": "ed25519",
        "key_id": key_id(private_key.public_key()),
        "signature": base64.b64encode(private_key.sign(manifest_bytes)).decode(),
    }
    return (json.dumps(record, indent=2) + "\n").encode()


def check_signature(
    bundle_dir: Path, manifest_bytes: bytes, *, declared_key_id: str | None, trusted: Path | None
) -> None:
    """Refuse the bundle unless its signature is present and valid where one is required.

    Required when the manifest names a signing key (so a stripped signature is caught) or when
    a trusted key is given (so unsigned and foreign-signed bundles are refused).
    """
    path = bundle_dir / SIGNATURE_NAME
    if not path.is_file():
        if trusted is not None:
            raise BundleIntegrityError(
                f"bundle {bundle_dir} is not signed; --trust-key needs a signed bundle "
                "(edgekit build --sign-key)"
            )
        if declared_key_id is not None:
            raise BundleIntegrityError(
                f"bundle {bundle_dir}: the manifest says it was signed (key {declared_key_id}) "
                f"but {SIGNATURE_NAME} is missing"
            )
        return
    record = _read_signature(path)
    if declared_key_id is not None and record["key_id"] != declared_key_id:
        raise BundleIntegrityError(
            f"bundle {bundle_dir}: {SIGNATURE_NAME} is from key {record['key_id']}, "
            f"the manifest names {declared_key_id}"
        )
    if trusted is None:
        return  # without a trusted key only consistency can be checked
    public = load_public_key(trusted)
    if record["key_id"] != key_id(public):
        raise BundleIntegrityError(
            f"bundle {bundle_dir} is signed by key {record['key_id']}, not by the trusted key "
            f"{key_id(public)} ({trusted})"
        )
    exceptions = require("cryptography.exceptions", extra="device", package="cryptography")
    try:
        public.verify(base64.b64decode(record["signature"], validate=True), manifest_bytes)
    except (exceptions.InvalidSignature, ValueError) as exc:
        raise BundleIntegrityError(
            f"bundle {bundle_dir}: the signature does not match manifest.json (changed after "
            "signing, or forged)"
        ) from exc


def _read_signature(path: Path) -> dict[str, str]:
    try:
        if path.stat().st_size > MAX_KEY_BYTES:
            raise BundleIntegrityError(f"{path} is too large to be a signature")
        record = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise BundleIntegrityError(f"{path}: unreadable signature: {exc}") from exc
    if not isinstance(record, dict) or record.get("schema") != SIGNATURE_SCHEMA or any(
        not isinstance(record.get(k), str) for k in ("algorithm", "key_id", "signature")
    ):  # fmt: skip
        raise BundleIntegrityError(f"{path}: not an edgekit signature ({SIGNATURE_SCHEMA})")
    if record["algorithm"] != "ed25519":
        raise BundleIntegrityError(f"{path}: unsupported signature algorithm {record['algorithm']}")
    return record
