"""The one factory of wire-schema reports for tests and benchmarks.

Plain module (no pytest, no paho): the benchmarks import it too, with ``tests/`` on their path.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from edgekit.schema import Report, report_topic


@dataclass(frozen=True)
class BundleSpec:
    """A bundle as reports describe it (what the build put in the manifest)."""

    bundle_id: str
    profile: str
    est_latency_ms: float
    fp32: float
    quantized: float
    model_bytes: int
    # What newer builds add: the eval-sample samples behind fp32 and quantized, the variant, and
    # the build host's side-by-side p50 of the artifact and of its fp32 model (None: unknown).
    samples: int | None = None
    variant: str | None = None
    host_p50_ms: float | None = None
    host_p50_fp32_ms: float | None = None

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.bundle_id.encode()).hexdigest()


BUNDLES = (
    BundleSpec("fashion-cnn-rpi4", "rpi4", 2.4, 91.2, 90.6, 98_304),
    BundleSpec("fashion-cnn-rpi5", "rpi5", 1.1, 91.2, 90.9, 98_304),
    BundleSpec("mobilenet-x86", "x86-64", 0.6, 88.0, 87.1, 612_352),
)


def make_report(
    device_id: str = "rpi4-lab-01",
    *,
    sequence: int = 0,
    message_id: str | None = None,
    bundle: BundleSpec = BUNDLES[0],
    p50_ms: float = 3.0,
    accuracy: float | None = 90.1,
) -> Report:
    """A valid report, with figures that vary with the sequence number like a real board's."""
    start = datetime(2025, 3, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=sequence)
    jitter = (sequence % 7) * 0.05
    p50 = p50_ms + jitter
    return Report.model_validate(
        {
            "schema": "edgekit.report/1",
            "message_id": message_id or uuid.uuid4().hex,
            "device_id": device_id,
            "sequence": sequence,
            "bundle_id": bundle.bundle_id,
            "bundle_digest": bundle.digest,
            "profile": bundle.profile,
            "artifact": "model.tflite",
            "format": "tflite",
            "backend": "litert",
            "backend_version": "1.2.0",
            "threads": 4,
            "started_at": start.isoformat(),
            "finished_at": (start + timedelta(seconds=30)).isoformat(),
            "latency": {
                "count": 200,
                "mean_ms": p50 * 1.05,
                "std_ms": 0.2,
                "min_ms": p50 * 0.9,
                "p50_ms": p50,
                "p90_ms": p50 * 1.2,
                "p99_ms": p50 * 1.6,
                "max_ms": p50 * 2.0,
                "init_ms": 40.0,
                "first_ms": p50 * 3,
            },
            "accuracy": None
            if accuracy is None
            else {"metric": "top1", "value": accuracy, "samples": 200},
            "peak_rss_mb": 48.5,
            "build": {
                "est_latency_ms": bundle.est_latency_ms,
                "metric": "top1",
                "fp32": bundle.fp32,
                "quantized": bundle.quantized,
                "model_bytes": bundle.model_bytes,
                "samples": bundle.samples,
                "variant": bundle.variant,
                "host_p50_ms": bundle.host_p50_ms,
                "host_p50_fp32_ms": bundle.host_p50_fp32_ms,
            },
            "host": {
                "hostname": device_id,
                "machine": "aarch64",
                "system": "Linux",
                "python": "3.11.2",
                "cpu_count": 4,
            },
        }
    )


def sample_report(device_id: str = "pi-bench-01", *, sequence: int = 0) -> Report:
    """``make_report`` under the name the reporter and security tests still call it by."""
    return make_report(device_id, sequence=sequence)


def report_message(report: Report, *, prefix: str = "edgekit/v1") -> tuple[str, bytes]:
    """(topic, payload) as the device publishes it."""
    return report_topic(report.device_id, prefix), report.to_json()
