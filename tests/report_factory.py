"""Valid wire-schema reports for the reporter and outbox tests."""

from __future__ import annotations

import hashlib
import platform
import uuid
from datetime import timedelta

from edgekit.schema import (
    BuildFigures,
    HostFacts,
    LatencyStats,
    Report,
    utc_now,
)


def sample_report(device_id: str = "pi-bench-01", *, sequence: int = 0) -> Report:
    """A schema-valid report with a fresh message id."""
    finished = utc_now()
    return Report(
        message_id=uuid.uuid4().hex,
        device_id=device_id,
        sequence=sequence,
        bundle_id="fashion-cnn-rpi4",
        bundle_digest=hashlib.sha256(b"fashion-cnn-rpi4").hexdigest(),
        profile="rpi4",
        artifact="model.tflite",
        format="tflite",
        backend="litert",
        backend_version="1.2.0",
        threads=4,
        started_at=finished - timedelta(seconds=30),
        finished_at=finished,
        latency=LatencyStats(
            count=50,
            mean_ms=3.1,
            std_ms=0.2,
            min_ms=2.8,
            p50_ms=3.0,
            p90_ms=3.4,
            p99_ms=3.9,
            max_ms=4.2,
            init_ms=12.0,
            first_ms=6.5,
        ),
        peak_rss_mb=88.0,
        build=BuildFigures(est_latency_ms=2.4, model_bytes=98_304),
        host=HostFacts(
            hostname="pi-bench-01",
            machine=platform.machine() or "unknown",
            system="Linux",
            python=platform.python_version(),
            cpu_count=4,
        ),
    )
