"""Creating a rollout: the bundle checked and in its store, the boards chosen, the waves planned.

Nothing is sent here. Every check a user can get wrong happens before the rollout is written:
the bundle (every file, and the signature with a trusted key), the store (reachable, and serving
exactly the archive it holds under the bundle's digest), the profile's budgets, the boards.
"""

from __future__ import annotations

import fnmatch
import hashlib
import ssl
import tempfile
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgekit.bundle import extract_bundle, verify_bundle
from edgekit.bundle_store import BundleStore, StoredBundle, manifest_digest
from edgekit.deploy_wire import MAX_ARCHIVE_BYTES, FitBudgets
from edgekit.errors import DeployError, ProfileError
from edgekit.manifest import Manifest
from edgekit.profiles import DeviceProfile, load_profile
from edgekit.rollout.evidence import FleetBoard, fleet
from edgekit.rollout.plan import GatePolicy, plan_waves
from edgekit.rollout.repository import RolloutDb


@dataclass(frozen=True, kw_only=True)
class RolloutRequest:
    """What ``edgekit deploy`` asks for."""

    bundle: Path
    store_url: str
    store_dir: Path | None = None
    devices: str | None = None  # a glob on device ids
    profile: str | None = None  # boards whose reports name this profile
    canary: str = "10%"
    waves: str = "25%,50%,100%"
    gate: GatePolicy = field(default_factory=GatePolicy)
    trust_key: Path | None = None
    require_signature: bool = False
    store_ca_file: Path | None = None


def create_rollout(db: RolloutDb, request: RolloutRequest) -> str:
    """Check everything, write the rollout (all waves pending); its id."""
    if (request.devices is None) == (request.profile is None):
        raise DeployError("choose the boards with exactly one of --devices GLOB or --profile P")
    plan_waves(["any"], canary=request.canary, waves=request.waves)  # the shares, checked first
    manifest, digest = _checked_bundle(request.bundle, trust_key=request.trust_key)
    stored = _stored(request, digest)
    url = stored.url(request.store_url)
    _check_served(url, stored, ca_file=request.store_ca_file)
    profile = _profile(manifest)
    gate = request.gate
    if gate.accuracy_drop_pt is None:
        gate = gate.model_copy(update={"accuracy_drop_pt": profile.budgets.max_accuracy_drop_pt})
    with db.reading("reading the fleet") as conn:
        boards = fleet(conn)
    chosen = _targets(boards, request, manifest, digest)
    waves = plan_waves([b.device_id for b in chosen], canary=request.canary, waves=request.waves)
    budgets = FitBudgets(max_model_mb=profile.budgets.max_model_mb,
                         max_ram_mb=profile.budgets.max_ram_mb,
                         max_bundle_mb=profile.budgets.max_bundle_mb)  # fmt: skip
    rollout_id = "r" + uuid.uuid4().hex[:8]
    selector = f"--devices {request.devices}" if request.devices else f"--profile {request.profile}"
    row = {
        "rollout_id": rollout_id, "bundle_digest": digest, "bundle_id": manifest.bundle_id,
        "profile": manifest.profile.name, "archive_sha256": stored.archive_sha256,
        "archive_size": stored.archive_size, "url": url,
        "signature_required": request.require_signature or manifest.signing_key_id is not None,
        "selector": selector, "budgets_json": budgets.model_dump_json(),
        "gate_json": gate.model_dump_json(),
    }  # fmt: skip
    db.create(row, waves, {b.device_id: b for b in chosen})
    return rollout_id


def _checked_bundle(bundle: Path, *, trust_key: Path | None) -> tuple[Manifest, str]:
    if bundle.is_file():
        with tempfile.TemporaryDirectory(prefix="edgekit-deploy-") as tmp:
            folder = extract_bundle(bundle, Path(tmp))
            return verify_bundle(folder, trust_key=trust_key), manifest_digest(folder)
    if not bundle.is_dir():
        raise DeployError(f"bundle not found: {bundle} (a bundle folder or its .tar.gz)")
    return verify_bundle(bundle, trust_key=trust_key), manifest_digest(bundle)


def _stored(request: RolloutRequest, digest: str) -> StoredBundle:
    """The store's entry: added from the bundle with --store, else read from the store's URL."""
    if request.store_dir is not None:
        return BundleStore(request.store_dir).add(request.bundle)
    record_url = f"{request.store_url.rstrip('/')}/{digest}.json"
    raw = _get(record_url, ca_file=request.store_ca_file, limit=64 * 1024)
    if raw is None:
        raise DeployError(
            f"the bundle store at {request.store_url} has no {digest}.tar.gz; add the bundle "
            "with --store DIR (the folder that URL serves)"
        )
    try:
        return StoredBundle.model_validate_json(raw)
    except ValidationError as exc:
        raise DeployError(f"{record_url} is not a bundle store record") from exc


def _check_served(url: str, stored: StoredBundle, *, ca_file: Path | None) -> None:
    """The store must serve exactly the archive it recorded, as boards will check it."""
    digest, size = hashlib.sha256(), 0
    with _open(url, ca_file=ca_file) as response:
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            if size > MAX_ARCHIVE_BYTES:
                break
    if size != stored.archive_size or digest.hexdigest() != stored.archive_sha256:
        raise DeployError(
            f"{url} serves {size} bytes with SHA-256 {digest.hexdigest()[:16]}..., not the "
            f"{stored.archive_size} bytes with {stored.archive_sha256[:16]}... its store "
            "recorded: wrong digest (is --store the folder --store-url serves?)"
        )


def _get(url: str, *, ca_file: Path | None, limit: int) -> bytes | None:
    """The body (at most ``limit`` bytes), or None for a 404."""
    try:
        with _open(url, ca_file=ca_file, missing_ok=True) as response:
            return bytes(response.read(limit))
    except _Missing:
        return None


class _Missing(Exception):
    pass


def _open(url: str, *, ca_file: Path | None, missing_ok: bool = False) -> Any:
    if not url.startswith(("http://", "https://")):
        raise DeployError(f"--store-url must be an http:// or https:// URL, not {url!r}")
    try:
        context = ssl.create_default_context(cafile=ca_file) if url.startswith("https:") else None
        return urllib.request.urlopen(url, timeout=15, context=context)
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and missing_ok:
            raise _Missing from exc
        raise DeployError(f"the bundle store answered {exc.code} {exc.reason} for {url}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DeployError(f"cannot reach the bundle store at {url}: {reason}") from exc


def _profile(manifest: Manifest) -> DeviceProfile:
    """The profile the bundle was built for, for its budgets."""
    ref = manifest.profile
    for candidate in (ref.source, ref.name):
        try:
            return load_profile(candidate)
        except ProfileError:
            continue
    raise DeployError(
        f"the bundle was built for profile {ref.name!r} ({ref.source}), which is neither "
        "shipped nor at that path: its budgets are what boards check the bundle against"
    )


def _targets(
    boards: list[FleetBoard], request: RolloutRequest, manifest: Manifest, digest: str
) -> list[FleetBoard]:
    if request.devices is not None:
        chosen = [b for b in boards if fnmatch.fnmatchcase(b.device_id, request.devices)]
        what = f"device ids matching {request.devices!r}"
    else:
        chosen = [b for b in boards if b.profile == request.profile]
        what = f"profile {request.profile!r}"
    if not chosen:
        raise DeployError(f"no board with {what} has reported to this database")
    foreign = [b for b in chosen if b.profile != manifest.profile.name]
    if foreign:
        shown = ", ".join(f"{b.device_id} ({b.profile})" for b in foreign[:5])
        raise DeployError(
            f"the bundle is built for {manifest.profile.name}, but {len(foreign)} chosen "
            f"board(s) run another profile: {shown}"
        )
    todo = [b for b in chosen if b.bundle_digest != digest]
    if not todo:
        raise DeployError(f"every board with {what} already runs this bundle")
    return todo


def describe(rollout_id: str, db: RolloutDb) -> str:
    """One line on what a new rollout will do: its waves and its gate."""
    rollout = db.get(rollout_id)
    sizes = ", ".join(f"{w.label} {w.size}" for w in db.waves(rollout_id))
    gate = rollout.gate.describe() if rollout else ""
    return f"rollout {rollout_id}: waves of {sizes} board(s); gate: {gate}"
