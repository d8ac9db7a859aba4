"""Microcontroller RAM: the measured TFLite Micro arena beside the former estimate and Vela's SRAM.

    python benchmarks/bench_mcu.py

Three int8 CNNs are built with ``edgekit build`` for the ethos-u55 profile (int8 end to end,
TensorFlow Lite Micro and Vela both run). Per model:

- the former estimate: tflite_inspect's ``arena_bytes`` (the largest op's live tensors, what the
  RAM check used before) and the former RAM figure (weights + that);
- TFLM: the interpreter's own recorded total, the smallest arena that allocates (bisection in a
  child process), the RAM figure (+ margin), and the time the measurement took;
- Vela (ethos-u55-128, Ethos_U55_High_End_Embedded, Shared_Sram): SRAM, flash, its cycle
  estimate in ms beside edgekit's estimate.

The TFLM figures are re-measured here with ``run_tflm`` on the bundle's artifact (timed), and
must equal the build's.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _harness import machine

OUT = Path(__file__).resolve().parent / "out" / "mcu"


def _models() -> list[tuple[str, Path, Path, Path]]:
    """(name, model, calibration, eval) for the three CNNs, trained once and cached."""
    from edgekit.converters import examples

    OUT.mkdir(parents=True, exist_ok=True)
    digits, fashion = examples.digits(), examples.fashion_mnist()
    found = []
    for name, split, make, n, epochs in (
        ("digits small_cnn 8x8", digits, lambda: examples.small_cnn((8, 8, 1), 10), None, 8),
        ("fashion small_cnn 28x28", fashion, lambda: examples.small_cnn((28, 28, 1), 10),
         15000, 3),
        ("fashion mobilenet_style 28x28", fashion,
         lambda: examples.mobilenet_style((28, 28, 1), 10, width=16), 15000, 3),
    ):  # fmt: skip
        stem = OUT / name.split()[0] / name.split()[1]
        stem.mkdir(parents=True, exist_ok=True)
        model = stem / "model.keras"
        if not model.is_file():
            keras_model = make()
            examples.train(keras_model, split.x_train[:n], split.y_train[:n], epochs=epochs)
            keras_model.save(model)
            np.savez(stem / "calibration.npz", x=split.x_train[-300:], y=split.y_train[-300:])
            np.savez(stem / "eval.npz", x=split.x_test[:1000], y=split.y_test[:1000])
        found.append((name, model, stem / "calibration.npz", stem / "eval.npz"))
    return found


def _row(name: str, model: Path, calibration: Path, evaluation: Path, tmp: Path) -> dict:
    from edgekit.bundle import verify_bundle
    from edgekit.converters.formats import ArtifactIO
    from edgekit.converters.pipeline import BuildRequest, build
    from edgekit.converters.tflite_inspect import inspect_tflite
    from edgekit.converters.tflm_run import run_tflm
    from edgekit.datasets import LabelledData
    from edgekit.profiles import load_profile

    out = tmp / model.parent.name
    started = time.perf_counter()
    report = build(BuildRequest(model=model, profile=load_profile("ethos-u55"), out_dir=out,
                                calibration=calibration, eval_data=evaluation,
                                allow_over_budget=True))  # fmt: skip
    build_s = time.perf_counter() - started
    art = report.primary
    tflm, vela = art.target.tflm, art.target.vela
    content = (out / "model.tflite").read_bytes()
    estimate = inspect_tflite(content).arena_bytes
    # The measurement again, timed on its own, on the same 200 eval inputs as the build's.
    artifact = verify_bundle(out).artifacts[0]
    io = ArtifactIO(artifact.inputs, artifact.outputs)
    data = LabelledData.of(np.load(evaluation)["x"]).take(200)
    started = time.perf_counter()
    again = run_tflm(content, io, data.xs, file_name="model.tflite")
    tflm_s = time.perf_counter() - started
    assert again.arena_bytes == tflm.arena_bytes, (again.arena_bytes, tflm.arena_bytes)
    return {
        "model": name,
        "params": art.params,
        "macs": art.macs,
        "tflite_bytes": len(content),
        "estimate_arena_bytes": estimate,
        "former_ram_bytes": len(content) + estimate,
        "tflm_recorded_bytes": tflm.recorded_arena_bytes,
        "tflm_arena_bytes": tflm.arena_bytes,
        "tflm_ram_bytes": tflm.ram_bytes,
        "tflm_probes": tflm.probes,
        "tflm_seconds": tflm_s,
        "tflm_max_diff": tflm.max_diff,
        "vela_sram_bytes": vela.sram_bytes,
        "vela_flash_bytes": vela.flash_bytes,
        "vela_cpu_ops": list(vela.cpu_ops),
        "vela_ms": vela.vela_ms,
        "edgekit_est_ms": vela.edgekit_est_ms,
        "top1_drop_pt": art.accuracy.drop_pt,
        "build_seconds": build_s,
    }


def _table(rows: list[dict]) -> str:
    head = (
        "| model | params | .tflite B | former estimate B (largest op) | former RAM figure B "
        "(weights + it) | TFLM recorded B | TFLM measured B (probes, s) | RAM figure B (+20 %)"
        " | Vela SRAM B | Vela flash B | Vela ms (est.) / edgekit est. ms | TFLM vs LiteRT |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['tflite_bytes']:,} | "
            f"{r['estimate_arena_bytes']:,} | {r['former_ram_bytes']:,} | "
            f"{r['tflm_recorded_bytes']:,} | {r['tflm_arena_bytes']:,} ({r['tflm_probes']}, "
            f"{r['tflm_seconds']:.1f}) | {r['tflm_ram_bytes']:,} | {r['vela_sram_bytes']:,} | "
            f"{r['vela_flash_bytes']:,} | {r['vela_ms']:.3f} / {r['edgekit_est_ms']:.3f} | "
            f"{r['tflm_max_diff']:g} step |"
        )
    return "\n".join(lines)


def main() -> None:
    """Build the three models, print the table and write out/mcu/results.json."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [_row(*m, Path(tmp)) for m in _models()]
    print(f"machine: {machine()}; load average {load:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at end")  # fmt: skip
    print(_table(rows))
    (OUT / "results.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
