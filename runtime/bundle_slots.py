"""The board's bundles on disk: whole bundles side by side, and two links saying which runs.

    <deploy_dir>/
      bundles/<digest>/          verified bundles, each whole: unpacked and checked elsewhere,
                                 then renamed in (the digest is that of its manifest.json)
      current -> bundles/<d1>    what the daemon runs
      previous -> bundles/<d0>   what it ran before: where a rollback goes
      staging/                   downloads (``<digest>.tar.gz.part`` while incomplete) and
                                 bundles being unpacked
      state.json                 the deployment agent's record (edgekit.runtime.deploy_state)

A swap is a sequence of steps, each durable (fsync of files and directories) before the next:
unpack into staging and verify, rename into ``bundles/``, point ``previous`` at the running
bundle, point ``current`` at the new one. A link is replaced by renaming a fresh link over it,
which is atomic, and it only ever names a whole bundle: a power cut at any point leaves
``current`` on the old bundle or the new, never a partial one. :meth:`BundleSlots.recover`
removes what an interrupted step left.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path

from edgekit.bundle import MANIFEST_NAME, extract_bundle, verify_bundle
from edgekit.bundle_store import manifest_digest
from edgekit.errors import BundleError, BundleIntegrityError
from edgekit.manifest import Manifest
from edgekit.runtime.durable import sync_dir, sync_tree

CURRENT = "current"
PREVIOUS = "previous"
BUNDLES = "bundles"
STAGING = "staging"
_UNPACKING = "unpacking-"

Step = Callable[[str], None]


def _no_step(_name: str) -> None:
    return None


class BundleSlots:
    """The deploy directory of one board."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bundles = root / BUNDLES
        self.staging = root / STAGING

    def recover(self, *, keep: Collection[str] = ()) -> list[str]:
        """Create the layout and remove what an interrupted step left: half-made links, folders
        being unpacked, bundles no link names and downloads, except those of the digests in
        ``keep`` (the command being worked on); the names removed."""
        for folder in (self.bundles, self.staging):
            folder.mkdir(parents=True, exist_ok=True)
        removed = []
        for stray in self.root.glob(".*.new"):
            stray.unlink()
            removed.append(stray.name)
        linked = {d for d in (self.digest(CURRENT), self.digest(PREVIOUS)) if d}
        for entry in [*self.staging.iterdir(), *self.bundles.iterdir()]:
            wanted = set(keep) if entry.parent == self.staging else linked | set(keep)
            if entry.name.startswith(_UNPACKING) or entry.name.split(".", 1)[0] not in wanted:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                removed.append(f"{entry.parent.name}/{entry.name}")
        sync_dir(self.root)
        return removed

    def digest(self, link: str) -> str | None:
        """The digest ``current`` or ``previous`` names, or None when the link is absent."""
        path = self.root / link
        if not path.is_symlink():
            return None
        return Path(os.readlink(path)).name

    def path(self, digest: str) -> Path:
        """The folder of a held bundle."""
        return self.bundles / digest

    def holds(self, digest: str) -> bool:
        """Whether a whole bundle with this digest is on the board."""
        return (self.path(digest) / MANIFEST_NAME).is_file()

    def part(self, digest: str) -> Path:
        """Where a download of ``digest`` goes while it is incomplete."""
        return self.staging / f"{digest}.tar.gz.part"

    def install(
        self,
        archive: Path,
        digest: str,
        *,
        trust_key: Path | None,
        on_step: Step = _no_step,
    ) -> Manifest:
        """Unpack ``archive`` beside the held bundles, verify every file (and the signature with
        ``trust_key``), check its manifest has ``digest``, then rename it in; its manifest."""
        work = Path(tempfile.mkdtemp(prefix=f"{_UNPACKING}{digest[:12]}-", dir=self.staging))
        try:
            folder = extract_bundle(archive, work)
            manifest = self._check(folder, digest, trust_key=trust_key)
            sync_tree(folder)
            on_step("unpacked")
            if self.holds(digest):
                shutil.rmtree(self.path(digest))
            os.replace(folder, self.path(digest))
            sync_dir(self.bundles)
            on_step("installed")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return manifest

    def adopt(self, bundle_dir: Path, *, trust_key: Path | None) -> str:
        """Copy a bundle installed by hand into the layout; its digest."""
        digest = manifest_digest(bundle_dir)
        if self.holds(digest):
            return digest
        work = Path(tempfile.mkdtemp(prefix=f"{_UNPACKING}{digest[:12]}-", dir=self.staging))
        try:
            copy = work / digest
            shutil.copytree(bundle_dir, copy, symlinks=False)
            self._check(copy, digest, trust_key=trust_key)
            sync_tree(copy)
            os.replace(copy, self.path(digest))
            sync_dir(self.bundles)
        except OSError as exc:
            raise BundleError(f"cannot copy {bundle_dir} into {self.bundles}: {exc}") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return digest

    def activate(self, digest: str, *, on_step: Step = _no_step) -> str | None:
        """Make the held bundle ``digest`` current, the running one previous; the digest that
        was current (None if none was)."""
        if not self.holds(digest):
            raise BundleError(f"bundle {digest[:16]}... is not held in {self.bundles}")
        running = self.digest(CURRENT)
        if running == digest:
            return running
        if running is not None:
            self._link(PREVIOUS, running)
        on_step("previous-linked")
        self._link(CURRENT, digest)
        on_step("current-linked")
        return running

    def _link(self, name: str, digest: str) -> None:
        fresh = self.root / f".{name}.new"
        fresh.unlink(missing_ok=True)
        # Relative, so the deploy directory can be moved or mounted elsewhere.
        os.symlink(Path(BUNDLES) / digest, fresh)
        os.replace(fresh, self.root / name)
        sync_dir(self.root)

    @staticmethod
    def _check(folder: Path, digest: str, *, trust_key: Path | None) -> Manifest:
        manifest = verify_bundle(folder, trust_key=trust_key)
        found = manifest_digest(folder)
        if found != digest:
            raise BundleIntegrityError(
                f"the bundle's manifest has SHA-256 {found[:16]}..., not the {digest[:16]}... "
                "it was sent as"
            )
        return manifest
