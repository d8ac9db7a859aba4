"""Writes that survive a power cut: fsync of files and of the directories that name them.

A rename is atomic, but it is durable only once the directory holding it is synced; a file's
bytes only once the file is. Each step of a deployment uses these before it takes the next.
"""

from __future__ import annotations

import os
from pathlib import Path


def sync_file(path: Path) -> None:
    """Flush a file's bytes to the device."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(folder: Path) -> None:
    """Make the names in ``folder`` (renames, new and removed entries) durable."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(folder: Path) -> None:
    """Flush every file under ``folder``, then each directory, deepest first."""
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file() and not path.is_symlink():
            sync_file(path)
        elif path.is_dir() and not path.is_symlink():
            sync_dir(path)
    sync_dir(folder)


def replace_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` by a synced temporary file renamed over it; a power cut leaves
    the old content or the new, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    sync_dir(path.parent)
