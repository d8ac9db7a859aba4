"""The fleet report at scale: 1,000,000 stored reports, SQLite and PostgreSQL, before and after.

Two steps, so the same fleet can be read by two versions of edgekit:

1. ``populate``: write a simulated fleet through the collector's own store (``Store.add_batch``,
   the path the collector takes): D boards over three profiles, W report windows each (one a
   minute), every board moving from the profile's first build to its second half-way (so every
   board is an A/B pair); the jetson-like x86 boards carry the board's candidate selection;
   some "rpi" boards are x86_64 hosts (simulated); with ``--drift`` every window carries the
   eval-sample drift summary, one board in ten a watched-folder summary, and one in fifty a
   shifted one (edgekit 0.1's schema has no drift, so the "before" fleet is written without).
2. ``render``: time ``edgekit report`` as a user runs it (a new process, imports included) on
   that database, into HTML; with ``--device`` also the drill-down of one board.

    .venv/bin/python benchmarks/bench_report.py populate --db sqlite:////tmp/fleet.db --drift
    .venv/bin/python benchmarks/bench_report.py render --db sqlite:////tmp/fleet.db \\
        --device dev-0042 --repeat 3     # wall and CPU seconds, bytes, load average per run

The "before" figures come from the previous commit checked out beside this one
(``git worktree add /tmp/ekold COMMIT``) and run with ``--edgekit /tmp/ekold``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

PROFILES = ("rpi4", "rpi5", "x86-64")
START = datetime(2025, 3, 1, tzinfo=UTC)


def _bundles():
    """Two builds per profile: (A, B, B's latency factor against A)."""
    from report_factory import BUNDLES, BundleSpec

    pairs = {}
    for spec, factor in zip(BUNDLES, (0.9, 1.0, 1.05), strict=True):
        second = BundleSpec(spec.bundle_id + "-v2", spec.profile, spec.est_latency_ms * factor,
                            spec.fp32, spec.quantized - 0.2, spec.model_bytes)  # fmt: skip
        pairs[spec.profile] = (spec, second, factor)
    return pairs


def _summary(classes: list[int], mean: float, std: float, confidence: list[int]) -> dict:
    return {"samples": sum(classes), "confidence": confidence, "classes": classes,
            "channel_mean": [mean], "channel_std": [std]}  # fmt: skip


REFERENCE = _summary([20] * 10, 0.286, 0.353, [0, 0, 2, 6, 8, 12, 14, 22, 36, 100])
WATCHED = _summary([2] * 10, 0.29, 0.35, [0, 0, 0, 1, 1, 1, 2, 2, 4, 9])
SHIFTED = _summary([8, 6, 2, 1, 1, 1, 1, 0, 0, 0], 0.52, 0.30, [0, 1, 3, 4, 4, 3, 2, 1, 1, 1])


def _selection(at: datetime) -> dict:
    return {
        "chosen": "model.tflite",
        "measured_at": at.isoformat(),
        "candidates": [
            {"artifact": "model.tflite", "variant": "int8", "p50_ms": 0.61, "accuracy": 87.1,
             "within_budget": True, "reason": ""},
            {"artifact": "model.onnx", "variant": "int8 QDQ S8S8 per-channel", "p50_ms": 0.93,
             "accuracy": 87.0, "within_budget": True, "reason": "slower"},
        ],
    }  # fmt: skip


def _device_templates(index: int, drift: bool) -> tuple[str, list[dict]]:
    from report_factory import make_report

    profile = PROFILES[index % len(PROFILES)]
    device = f"dev-{index:04d}"
    templates = []
    for spec in _bundles()[profile][:2]:
        data = json.loads(make_report(device, bundle=spec).to_json())
        if profile == "x86-64" or index % 37 == 1:
            data["host"]["machine"] = "x86_64"  # x86 boards, and a few simulated "rpi" ones
        if profile == "x86-64":
            data["selection"] = _selection(START)
        if drift:
            data["drift"] = {"eval_sample": REFERENCE, "reference": REFERENCE}
        templates.append(data)
    return device, templates


def _windows(index: int, windows: int, drift: bool):
    """(payload bytes, received_at) of one board's windows."""
    _, (first, second) = _device_templates(index, drift)
    speed = 0.8 + 0.4 * ((index * 7919) % 101) / 100  # boards differ by up to 1.5x
    origin = START + timedelta(seconds=index % 60)
    for seq in range(windows):
        data = dict(second if seq >= windows // 2 else first)
        # The second build's estimate carries its speed-up, and so do its measurements.
        base = data["build"]["est_latency_ms"] * speed * (1 + 0.05 * ((seq * 31) % 7) / 7)
        started = origin + timedelta(minutes=seq)
        lat = dict(data["latency"], p50_ms=base, mean_ms=base * 1.05, min_ms=base * 0.9,
                   p90_ms=base * 1.2, p99_ms=base * 1.6, max_ms=base * 2.0, first_ms=base * 3,
                   init_ms=40.0 if seq == 0 else None)  # fmt: skip
        data.update(message_id=uuid.uuid4().hex, sequence=seq, latency=lat,
                    started_at=started.isoformat(),
                    finished_at=(started + timedelta(seconds=30)).isoformat())  # fmt: skip
        if drift and index % 10 == 0:
            late = index % 50 == 0 and seq >= windows * 3 // 4
            data["drift"] = dict(data["drift"], watched=SHIFTED if late else WATCHED)
            data["workload_inputs"] = 20
        yield json.dumps(data, separators=(",", ":")).encode(), started + timedelta(seconds=31)


def populate(url: str, *, devices: int, windows: int, drift: bool, batch: int) -> dict:
    """Write the simulated fleet into ``url``; what was written, and how long it took."""
    from edgekit.collector import Store
    from edgekit.collector.intake import AcceptedReport
    from edgekit.schema import Report

    started = time.monotonic()
    stored = 0
    with Store(url) as store:
        pending: list[AcceptedReport] = []
        for index in range(devices):
            for payload, received in _windows(index, windows, drift):
                report = Report.model_validate_json(payload)
                pending.append(AcceptedReport(report, received, payload))
                if len(pending) >= batch:
                    stored += store.add_batch(pending).stored
                    pending = []
            if index % 100 == 99:
                print(f"  {index + 1} boards, {stored} reports, "
                      f"{time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
        if pending:
            stored += store.add_batch(pending).stored
        for index in range(devices):
            store.add_status(f"dev-{index:04d}", "offline" if index % 9 == 0 else "online")
    return {"url": url, "reports": stored, "seconds": round(time.monotonic() - started, 1)}


def _run(edgekit: Path | None, args: list[str], out: Path) -> tuple[float, float, int]:
    """Wall time and CPU time (user + system) of one ``edgekit report`` process, and the size
    of what it wrote. The CPU time is the report process's own: a PostgreSQL server's work for
    it is in other processes."""
    env = dict(os.environ)
    cwd = None
    if edgekit is not None:  # another checkout's edgekit package ahead of the installed one
        env["PYTHONPATH"] = str(edgekit)
        cwd = str(edgekit)
    out.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "edgekit", "report", *args, "--out", str(out)],
                            capture_output=True, text=True, env=env, cwd=cwd)  # fmt: skip
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"edgekit report failed:\n{result.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, out.stat().st_size


def render(
    url: str, *, edgekit: Path | None, device: str | None, repeat: int, out: Path, fleet: bool
) -> dict:
    """Time the fleet report (and a board's drill-down) ``repeat`` times each."""
    runs: dict[str, list] = {"fleet": []} if fleet else {}
    if device:
        runs["device"] = []
    for _ in range(repeat):
        if fleet:
            runs["fleet"].append(_measured(edgekit, ["--db", url], out / "fleet.html"))
        if device:
            args = ["--db", url, "--device", device]
            runs["device"].append(_measured(edgekit, args, out / "device.html"))
    return runs


def _measured(edgekit: Path | None, args: list[str], out: Path) -> dict:
    load = os.getloadavg()[0]
    seconds, cpu, size = _run(edgekit, args, out)
    return {"seconds": round(seconds, 2), "cpu_s": round(cpu, 2), "bytes": size,
            "load": round(load, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("populate", "render"))
    parser.add_argument("--db", required=True, help="SQLAlchemy URL")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--windows", type=int, default=1000, help="reports per board")
    parser.add_argument("--drift", action="store_true", help="windows carry drift summaries")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--edgekit", type=Path, help="run the edgekit package of this checkout")
    parser.add_argument("--device", help="also time the drill-down of this board")
    parser.add_argument("--only-device", action="store_true", help="time the drill-down only")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    if args.step == "populate":
        result = populate(args.db, devices=args.devices, windows=args.windows, drift=args.drift,
                          batch=args.batch)  # fmt: skip
    else:
        result = render(args.db, edgekit=args.edgekit, device=args.device, repeat=args.repeat,
                        out=args.out, fleet=not args.only_device)  # fmt: skip
    from _harness import machine

    print(json.dumps({"machine": machine(), "step": args.step, **result}, indent=2))


if __name__ == "__main__":
    main()
