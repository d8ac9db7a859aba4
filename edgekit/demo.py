"""``edgekit demo``: the whole loop on one machine, with nothing to set up.

Train a small CNN on scikit-learn's digits (shipped in the package), build it for two boards,
start an embedded MQTT broker and a collector (SQLite), run simulated boards (real
``edgekit daemon`` processes) for a few windows, and write the fleet report.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.progress import Progress, SilentProgress

PROFILES = ("rpi4", "jetson-nano")


@dataclass(frozen=True)
class DemoResult:
    """Where the demo left its outputs, and what reached the collector."""

    out_dir: Path
    bundles: tuple[Path, ...]
    database: Path
    report: Path
    devices: int
    reports_sent: int
    reports_stored: int


@dataclass(frozen=True)
class _Device:
    device_id: str
    bundle: Path


def run_demo(
    out_dir: Path,
    *,
    devices_per_profile: int = 2,
    reports: int = 4,
    interval_s: float = 1.0,
    epochs: int = 15,
    progress: Progress | None = None,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo into ``out_dir`` (created, or reused if it holds an earlier demo)."""
    from edgekit.collector import (
        Collector,
        CollectorSettings,
        EmbeddedBroker,
        Store,
    )
    from edgekit.collector.broker_url import BrokerUrl
    from edgekit.converters.examples import digits, small_cnn, train
    from edgekit.converters.pipeline import BuildRequest, build
    from edgekit.fleet_report import fleet_figures, write_report
    from edgekit.profiles import load_profile
    from edgekit.vocab import MqttVersion, ReportFormat

    progress = progress or SilentProgress()
    tell = say
    # Absolute: the simulated boards run in out_dir, so relative paths would point elsewhere.
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()) and not (out_dir / "demo-model.keras").exists():
        raise EdgekitError(f"{out_dir} is not empty and holds no earlier demo; pick another --out")

    split = digits()
    np.savez(out_dir / "calibration.npz", x=split.x_train[:300], y=split.y_train[:300])
    np.savez(out_dir / "eval.npz", x=split.x_test, y=split.y_test)
    model = small_cnn(split.x_train.shape[1:], 10)
    with progress.task("Training a CNN on scikit-learn's digits", total=epochs) as task:
        train(model, split.x_train, split.y_train, epochs=epochs,
              on_epoch=lambda _e, _a: task.advance())  # fmt: skip
    model.save(out_dir / "demo-model.keras")

    bundles = []
    for name in PROFILES:
        bundle = out_dir / "bundles" / name
        result = build(
            BuildRequest(
                model=out_dir / "demo-model.keras",
                profile=load_profile(name),
                out_dir=bundle,
                calibration=out_dir / "calibration.npz",
                eval_data=out_dir / "eval.npz",
                allow_over_budget=True,
            ),
            progress=progress,
        )
        formats = ", ".join(a.artifact.file for a in result.artifacts)
        tell(f"built {name}: {formats} -> {bundle}")
        bundles.append(bundle)

    devices = [
        _Device(f"{name}-{i + 1:02d}", bundle)
        for name, bundle in zip(PROFILES, bundles, strict=True)
        for i in range(devices_per_profile)
    ]
    database = out_dir / "edgekit.db"
    port = _free_port()
    expected = len(devices) * reports
    with (
        EmbeddedBroker(port) as broker,
        Store(f"sqlite:///{database}") as store,
        Collector(
            CollectorSettings(
                broker=BrokerUrl.parse(broker.url),
                client_id="edgekit-demo",
                mqtt_version=MqttVersion.V311,  # amqtt speaks MQTT 3.1.1 only
            ),
            store,
        ),
    ):
        tell(f"embedded broker on {broker.url}, collector storing into {database}")
        boards = [_start_daemon(d, broker.url, out_dir, reports, interval_s) for d in devices]
        with progress.task(f"{len(devices)} simulated boards reporting", total=expected) as task:
            stored = 0
            deadline = time.monotonic() + 60 + reports * interval_s * 3
            while stored < expected and time.monotonic() < deadline:
                time.sleep(0.5)
                now = len(store.message_ids())
                task.advance(now - stored)
                stored = now
        failed = [d.device_id for d, p in zip(devices, boards, strict=True) if _finish(p)]
        if failed:
            raise EdgekitError(f"simulated board(s) {', '.join(failed)} failed; see {out_dir}/logs")
        stored = len(store.message_ids())
        figures = fleet_figures(store.snapshot())
    report = write_report(figures, out_dir / "report.html", ReportFormat.HTML,
                          source=f"sqlite:///{database}")  # fmt: skip
    return DemoResult(out_dir, tuple(bundles), database, report, len(devices), expected, stored)


def _start_daemon(
    device: _Device, broker: str, out_dir: Path, reports: int, interval_s: float
) -> subprocess.Popen[bytes]:
    logs = out_dir / "logs"
    logs.mkdir(exist_ok=True)
    log = (logs / f"{device.device_id}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "edgekit", "daemon", str(device.bundle), "--broker", broker,
         "--device-id", device.device_id, "--mqtt", "3.1.1", "--reports", str(reports),
         "--interval", str(interval_s), "--window", "200", "--outbox",
         str(out_dir / "outbox" / f"{device.device_id}.sqlite")],
        stdout=log, stderr=subprocess.STDOUT, cwd=out_dir,
    )  # fmt: skip


def _finish(process: subprocess.Popen[bytes]) -> int:
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
