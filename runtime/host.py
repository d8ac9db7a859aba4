"""Facts about the board the runtime reports: what it is and how much memory the process took."""

from __future__ import annotations

import os
import platform
import resource
import socket
import sys

from edgekit.schema import HostFacts


def host_facts() -> HostFacts:
    """Hostname, architecture, OS, Python version and CPU count of this machine."""
    return HostFacts(
        hostname=socket.gethostname()[:255],
        machine=platform.machine()[:64] or "unknown",
        system=f"{platform.system()} {platform.release()}"[:64],
        python=platform.python_version(),
        cpu_count=os.cpu_count() or 1,
    )


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def default_device_id() -> str:
    """A topic-safe device id from the hostname."""
    cleaned = "".join(c if c.isalnum() or c in "_.:-" else "-" for c in socket.gethostname())
    return cleaned.lstrip("_.:-")[:64] or "device"
