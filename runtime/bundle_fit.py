"""Whether a bundle fits the board before it is unpacked: the profile's flash and RAM budgets,
the memory the board has, and the free space of the deploy directory's disk."""

from __future__ import annotations

import shutil
import tarfile
import zlib
from pathlib import Path

from edgekit.bundle import MANIFEST_NAME, MAX_MANIFEST_BYTES
from edgekit.deploy_wire import FitBudgets
from edgekit.errors import BundleError
from edgekit.manifest import Manifest

_MIB = 2**20
# Room left on the disk after unpacking, for the outbox, logs and the next download.
DISK_MARGIN_BYTES = 16 * _MIB


class DoesNotFit(BundleError):
    """The bundle is larger than the board's budgets or than what it has free."""


def manifest_in_archive(archive: Path) -> tuple[bytes, int]:
    """The bytes of ``<folder>/manifest.json`` in a bundle archive and what all its members would
    take unpacked, read from the headers without writing anything."""
    found: bytes | None = None
    total = 0
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                total += max(0, member.size)
                parts = Path(member.name).parts
                if len(parts) == 2 and parts[1] == MANIFEST_NAME and member.isfile():
                    if member.size > MAX_MANIFEST_BYTES:
                        raise BundleError(f"{archive}: manifest larger than {MAX_MANIFEST_BYTES}")
                    extracted = tar.extractfile(member)
                    found = extracted.read() if extracted is not None else b""
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BundleError(f"cannot read the bundle archive {archive}: {exc}") from exc
    if found is None:
        raise BundleError(f"{archive} holds no {MANIFEST_NAME} in its folder")
    return found, total


def check_unpacked(manifest: Manifest, manifest_bytes: int, archive_bytes: int) -> None:
    """DoesNotFit unless the archive unpacks to what the manifest lists (plus the manifest and
    its signature): nothing is written for a file that would be refused, or for a gzip bomb."""
    listed = sum(entry.size for entry in manifest.files.values()) + manifest_bytes
    if archive_bytes > listed + MAX_MANIFEST_BYTES:
        raise DoesNotFit(
            f"the archive unpacks to {archive_bytes} bytes, its manifest lists {listed}"
        )


def check_fit(manifest: Manifest, budgets: FitBudgets | None, *, disk: Path) -> None:
    """DoesNotFit naming the first budget or resource the bundle exceeds."""
    unpacked = sum(entry.size for entry in manifest.files.values())
    largest = max(manifest.artifacts, key=lambda a: a.metrics.sizes.model_bytes)
    ram_mb = max(a.metrics.est_ram_mb for a in manifest.artifacts)
    if budgets is not None:
        model_mb = largest.metrics.sizes.model_bytes / _MIB
        if model_mb > budgets.max_model_mb:
            raise DoesNotFit(
                f"{largest.file} takes {model_mb:.2f} MB of flash, the profile allows "
                f"{budgets.max_model_mb:g} MB"
            )
        if budgets.max_bundle_mb is not None and unpacked / _MIB > budgets.max_bundle_mb:
            raise DoesNotFit(
                f"the bundle takes {unpacked / _MIB:.2f} MB unpacked, the profile allows "
                f"{budgets.max_bundle_mb:g} MB"
            )
        if ram_mb > budgets.max_ram_mb:
            raise DoesNotFit(
                f"the model needs about {ram_mb:.1f} MB of RAM, the profile allows "
                f"{budgets.max_ram_mb:g} MB"
            )
    available = available_ram_mb()
    if available is not None and ram_mb > available:
        raise DoesNotFit(f"the model needs about {ram_mb:.1f} MB of RAM, {available:.0f} MB free")
    free = shutil.disk_usage(disk).free
    if unpacked + DISK_MARGIN_BYTES > free:
        raise DoesNotFit(
            f"the bundle takes {unpacked / _MIB:.1f} MB unpacked, {disk} has "
            f"{free / _MIB:.1f} MB free (and keeps {DISK_MARGIN_BYTES // _MIB} MB spare)"
        )


def check_disk_for(size: int, *, disk: Path) -> None:
    """DoesNotFit unless a download of ``size`` more bytes leaves the margin free."""
    free = shutil.disk_usage(disk).free
    if size + DISK_MARGIN_BYTES > free:
        raise DoesNotFit(
            f"the archive needs {size / _MIB:.1f} MB, {disk} has {free / _MIB:.1f} MB free"
        )


def available_ram_mb() -> float | None:
    """MemAvailable of /proc/meminfo in MiB (Linux), else None."""
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
