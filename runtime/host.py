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
    """Peak resident set size of this process's own memory so far, in MiB.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this process image. Not
    ``ru_maxrss``: exec keeps the larger of the old and new image's peaks there, so a daemon
    started by a 900 MB process would report 900 MB. Elsewhere ``ru_maxrss`` is the best there is.
    """
    own = _vm_hwm_kib()
    if own is not None:
        return own / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _vm_hwm_kib() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def default_device_id() -> str:
    """A topic-safe device id from the hostname."""
    cleaned = "".join(c if c.isalnum() or c in "_.:-" else "-" for c in socket.gethostname())
    return cleaned.lstrip("_.:-")[:64] or "device"
