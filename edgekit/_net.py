"""Ports on this machine: a free one to listen on, and waiting until something listens."""

from __future__ import annotations

import socket
import subprocess

from edgekit._wait import wait_until

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port nothing listens on right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, *, host: str = LOCALHOST, timeout_s: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(timeout_s)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(
    port: int,
    *,
    host: str = LOCALHOST,
    timeout_s: float = 10.0,
    process: subprocess.Popen[bytes] | subprocess.Popen[str] | None = None,
) -> None:
    """Wait until ``host:port`` accepts connections; TimeoutError after ``timeout_s``, and
    RuntimeError at once if ``process`` (the one meant to listen) exits first."""

    def listening() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before {host}:{port} opened"
            )
        return port_open(port, host=host)

    wait_until(listening, timeout_s=timeout_s, what=f"something to listen on {host}:{port}")
