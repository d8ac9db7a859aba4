"""Downloading a bundle archive on the board, resuming where an interrupted download stopped.

The bytes go to ``<name>.part`` and are flushed to disk every few hundred KiB, so what a SIGKILL
or a power cut leaves is a prefix of the archive. The next attempt asks for the rest with a
``Range`` header; a server that answers with the whole file (200) starts it afresh. Only a file
of the announced size whose SHA-256 matches is renamed to its final name: nothing downstream
ever sees a partial or foreign archive. HTTP and HTTPS through the standard library.
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from edgekit._version import __version__
from edgekit.bundle import sha256_file
from edgekit.errors import BundleIntegrityError, DeployError
from edgekit.runtime.durable import sync_dir

_CHUNK = 64 * 1024
# Durable prefix granularity: a power cut loses at most this much of what was fetched.
_SYNC_EVERY = 256 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class FetchInterrupted(DeployError):
    """The download was stopped on purpose (the daemon stops, or a newer command came)."""


def fetch_archive(
    url: str,
    part: Path,
    *,
    size: int,
    sha256: str,
    ca_file: Path | None = None,
    timeout_s: float = 30.0,
    stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Fetch ``url`` into ``part`` (resuming what it holds) and check it is ``size`` bytes with
    SHA-256 ``sha256``; the archive's final path (``part`` without ``.part``).

    DeployError when the store cannot be reached or answers with an error, BundleIntegrityError
    when the bytes are not the ones announced (the partial file is then removed),
    FetchInterrupted when ``stop()`` turns true (the partial file is kept for the next attempt).
    """
    final = part.with_name(part.name.removesuffix(".part"))
    if final.is_file() and final.stat().st_size == size and sha256_file(final) == sha256:
        return final
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.is_file() else 0
    if have > size:
        part.unlink()
        have = 0
    if have < size:
        _download(url, part, have=have, size=size, ca_file=ca_file, timeout_s=timeout_s,
                  stop=stop, on_progress=on_progress)  # fmt: skip
    got = part.stat().st_size
    digest = sha256_file(part)
    if got != size or digest != sha256:
        part.unlink()
        raise BundleIntegrityError(
            f"the archive from {url} has {got} bytes with SHA-256 {digest[:16]}..., the command "
            f"announced {size} bytes with {sha256[:16]}... (wrong or changed file in the store)"
        )
    os.replace(part, final)
    sync_dir(final.parent)
    return final


def _download(
    url: str,
    part: Path,
    *,
    have: int,
    size: int,
    ca_file: Path | None,
    timeout_s: float,
    stop: Callable[[], bool],
    on_progress: Callable[[int, int], None] | None,
) -> None:
    headers = {"User-Agent": f"edgekit/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(
            request, timeout=timeout_s, context=_context(url, ca_file)
        )
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have == size:
            return  # everything was there already
        raise DeployError(f"the bundle store answered {exc.code} {exc.reason} for {url}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DeployError(f"cannot reach the bundle store at {url}: {reason}") from exc
    with response:
        start = _start_of(response, have)
        with part.open("r+b" if start else "wb") as out:
            out.seek(start)
            out.truncate()
            _copy(response, out, done=start, size=size, url=url, stop=stop,
                  on_progress=on_progress)  # fmt: skip


def _start_of(response: http.client.HTTPResponse, have: int) -> int:
    """Where the body goes in the file: ``have`` for a 206 continuing it, 0 for a whole 200."""
    if response.status != 206:
        return 0
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if match is None or int(match.group(1)) != have:
        # A slice that does not continue the file cannot be trusted to line up; refetch it all.
        raise DeployError(
            f"the bundle store answered a range request with "
            f"{response.headers.get('Content-Range')!r}, not bytes {have}-"
        )
    return have


def _copy(
    response: http.client.HTTPResponse,
    out: BinaryIO,
    *,
    done: int,
    size: int,
    url: str,
    stop: Callable[[], bool],
    on_progress: Callable[[int, int], None] | None,
) -> None:
    unsynced = 0
    try:
        while done < size:
            if stop():
                raise FetchInterrupted(f"download of {url} stopped at {done} of {size} bytes")
            # read1: what has arrived (up to a chunk), so a stop is seen on a slow link too.
            chunk = response.read1(min(_CHUNK, size + 1 - done))
            if not chunk:
                break
            out.write(chunk)
            done += len(chunk)
            unsynced += len(chunk)
            if unsynced >= _SYNC_EVERY:
                _sync(out)
                unsynced = 0
            if on_progress is not None:
                on_progress(done, size)
    except (OSError, http.client.HTTPException) as exc:
        raise DeployError(f"download of {url} broke off at {done} of {size} bytes: {exc}") from exc
    finally:
        _sync(out)


def _sync(fh: BinaryIO) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _context(url: str, ca_file: Path | None) -> ssl.SSLContext | None:
    if not url.startswith("https:"):
        return None
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise DeployError(f"cannot load the CA file {ca_file} for {url}: {exc}") from exc
