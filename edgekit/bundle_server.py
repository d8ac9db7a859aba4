"""Serving a bundle store over HTTP(S), with Range requests so boards resume broken downloads.

    with BundleServer(Path("store"), port=8080) as server:   # or: edgekit serve-bundles store
        print(server.url)                                     # http://127.0.0.1:8080

Only the store's own names (``<digest>.tar.gz`` and ``<digest>.json``) are served, read-only,
with GET and HEAD. A ``Range: bytes=a-b`` (or ``a-``, ``-n``) gets 206 and that slice; a range
past the end gets 416; several ranges or a malformed header get the whole file, as RFC 9110
allows. Entries never change, so the digest in the name is also the ETag. Standard library only.
"""

from __future__ import annotations

import re
import ssl
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from edgekit.bundle_store import STORE_NAME
from edgekit.errors import DeployError

_CHUNK = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True, slots=True)
class Served:
    """One request the server answered: what, from which byte, with what status."""

    name: str
    start: int
    status: int
    sent: int


class BundleServer:
    """A bundle store directory served on a thread (``with``) or in the foreground."""

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        rate_limit_bps: int | None = None,
    ) -> None:
        if not root.is_dir():
            raise DeployError(f"bundle store not found: {root} is not a directory")
        if rate_limit_bps is not None and rate_limit_bps < 1:
            raise DeployError("the rate limit must be at least 1 byte per second")
        self.root = root
        self.rate_limit_bps = rate_limit_bps
        self.served: list[Served] = []
        self._lock = threading.Lock()
        try:
            self._httpd = ThreadingHTTPServer((host, port), _Handler)
        except OSError as exc:
            raise DeployError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self._httpd.daemon_threads = True
        self._httpd.bundle_server = self  # type: ignore[attr-defined]
        self.tls = certfile is not None
        if certfile is not None:
            self._httpd.socket = _tls_context(certfile, keyfile).wrap_socket(
                self._httpd.socket, server_side=True
            )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL boards fetch from."""
        host, port = self._httpd.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    def record(self, served: Served) -> None:
        """Remember one answered request (the handler calls it)."""
        with self._lock:
            self.served.append(served)

    def serve_forever(self) -> None:
        """Serve until :meth:`close` is called from another thread (or the process ends)."""
        self._httpd.serve_forever(poll_interval=0.2)

    def __enter__(self) -> BundleServer:
        self._thread = threading.Thread(
            target=self.serve_forever, name="edgekit-bundle-server", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(10)
            self._thread = None
        self._httpd.server_close()


def _tls_context(certfile: Path, keyfile: Path | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise DeployError(f"cannot load the TLS certificate {certfile}: {exc}") from exc
    return context


class RangeNotSatisfiable(Exception):
    """The Range asks for bytes past the end of the file."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte a Range header asks for; None for the whole file (no
    header, several ranges, or one that does not parse); RangeNotSatisfiable past the end."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - n), size - 1
    start = int(first)
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable
    return start, min(int(last), size - 1) if last else size - 1


class _Handler(BaseHTTPRequestHandler):
    server_version = "edgekit-bundle-store/1"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def log_message(self, format: str, *args: Any) -> None:
        return  # requests are recorded in BundleServer.served, not printed

    def _answer(self, *, body: bool) -> None:
        owner: BundleServer = self.server.bundle_server  # type: ignore[attr-defined]
        name = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
        path = owner.root / name
        if STORE_NAME.match(name) is None or not path.is_file():
            self._plain(HTTPStatus.NOT_FOUND, f"no {name} in this bundle store\n", body=body)
            owner.record(Served(name, 0, HTTPStatus.NOT_FOUND, 0))
            return
        size = path.stat().st_size
        try:
            wanted = byte_range(self.headers.get("Range"), size)
        except RangeNotSatisfiable:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            owner.record(Served(name, size, HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, 0))
            return
        first, last = wanted or (0, size - 1)
        status = HTTPStatus.OK if wanted is None else HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        self.send_header("Content-Type", _content_type(name))
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{name.split(".", 1)[0]}"')
        if status is HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        sent = self._send_file(path, first, last, owner.rate_limit_bps) if body else 0
        owner.record(Served(name, first, status, sent))

    def _send_file(self, path: Path, first: int, last: int, rate: int | None) -> int:
        sent = 0
        started = time.monotonic()
        # Small writes under a rate limit, so the pace is smooth rather than bursts and pauses.
        step = _CHUNK if rate is None else max(1024, min(_CHUNK, rate // 10))
        try:
            with path.open("rb") as fh:
                fh.seek(first)
                while sent < last - first + 1:
                    chunk = fh.read(min(step, last - first + 1 - sent))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    if rate is not None:
                        # Paced against the start, so the average holds whatever each write took.
                        ahead = sent / rate - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True  # the board went away; it resumes with a Range
        return sent

    def _plain(self, status: HTTPStatus, text: str, *, body: bool) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


def _content_type(name: str) -> str:
    return "application/json" if name.endswith(".json") else "application/gzip"
