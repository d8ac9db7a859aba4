"""A watched input folder: real inputs beside the eval sample, run as they arrive.

Each new ``.npy`` (one sample, or a batch) or image file is run once; its result is written as
``<name>.result.json`` next to it, or in the output folder. Writers should create files under a
temporary name and rename them into place; files younger than ``settle_s`` are left for the next
poll so a half-written file is never read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from edgekit.datasets import IMAGE_SUFFIXES, load_image, load_npy
from edgekit.errors import EdgekitError
from edgekit.runtime.drift import DriftAccumulator
from edgekit.runtime.session import DeviceSession
from edgekit.schema import utc_now
from edgekit.vocab import PixelRange

RESULT_SUFFIX = ".result.json"


class WatchedFolder:
    """Runs new files of ``folder`` through ``session``; :meth:`poll` returns their latencies."""

    def __init__(
        self,
        folder: Path,
        session: DeviceSession,
        *,
        out: Path | None = None,
        pixel_range: PixelRange = PixelRange.UNIT,
        settle_s: float = 0.2,
    ) -> None:
        if not folder.is_dir():
            raise EdgekitError(f"watch folder not found: {folder}")
        self.folder = folder
        self.out = out or folder
        self.out.mkdir(parents=True, exist_ok=True)
        self.session = session
        self.pixel_range = pixel_range
        self.settle_s = settle_s
        self.processed = 0
        self.failed = 0
        # What the inputs and outputs looked like since the daemon last took it (per window).
        self.drift = DriftAccumulator(session)

    def poll(self) -> list[float]:
        """Run every settled file that has no result yet; their inference latencies in ms."""
        latencies = []
        now = time.time()
        for file in sorted(self.folder.iterdir()):
            suffix = file.suffix.lower()
            if not file.is_file() or (suffix != ".npy" and suffix not in IMAGE_SUFFIXES):
                continue
            result = self.out / f"{file.name}{RESULT_SUFFIX}"
            if result.exists() or now - file.stat().st_mtime < self.settle_s:
                continue
            latencies.extend(self._run(file, result))
        return latencies

    def _run(self, file: Path, result: Path) -> list[float]:
        record: dict[str, object] = {
            "file": file.name,
            "bundle_id": self.session.manifest.bundle_id,
            "at": utc_now().isoformat(),
        }
        latency: list[float] = []
        try:
            x = self._load(file)
            start = time.perf_counter()
            outputs = self.session.predict(x)
            latency = [(time.perf_counter() - start) * 1e3]
            self.drift.add(x, outputs)
            record["latency_ms"] = latency[0]
            record["outputs"] = outputs.tolist()
            if outputs.ndim == 2 and outputs.shape[1] > 1:
                record["top1"] = outputs.argmax(axis=1).tolist()
            self.processed += 1
        except (EdgekitError, ValueError, OSError) as exc:
            record["error"] = str(exc)
            self.failed += 1
        tmp = result.with_name(result.name + ".tmp")
        tmp.write_text(json.dumps(record) + "\n")
        tmp.replace(result)  # readers never see half a result
        return latency

    def _load(self, file: Path) -> np.ndarray:
        spec = self.session.inputs[0]
        if len(self.session.inputs) != 1:
            raise EdgekitError("watched folders feed single-input models only")
        if file.suffix.lower() == ".npy":
            x = load_npy(file)
            sample_rank = len(spec.shape) - 1
            return x[None] if x.ndim == sample_rank else x
        return load_image(file, spec=spec, pixel_range=self.pixel_range)[None]
