"""PyTorch models: edgekit's artifacts beside litert-torch's documented int8 recipe done by hand
and beside ONNX Runtime's quantize_static on the torch-exported ONNX.

    python benchmarks/bench_torch.py [--models rescnn mobilenetv3 transformer gru]
                                     [--profile x86-64]

Per model (tests/torch_models.py: trained on Fashion-MNIST or digits, cached under
benchmarks/out/torch-models): top-1 on the eval data, file size, host p50 (all artifacts of a
model timed side by side, taking turns, in one run, at 1 thread and at the build's thread count)
and build time.
- edgekit: ``build(model.pt2, profile)``. With x86-64 (``choose_on = "host"``) the build measures
  its candidates on this machine and ships the fastest within budget; its candidate table is
  printed after the main table.
- litert-torch by hand: PT2E per-channel symmetric, its default (histogram) observers, 300
  calibration samples, ``litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=q))``
  (int8 I/O, as the recipe gives it).
- ORT by hand: ``torch.onnx.export(dynamo=True)``, ``quant_pre_process``, then
  ``quantize_static(QDQ, per_channel=True, QInt8/QInt8)`` on the same 300 samples.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np
from _harness import machine

OUT = Path(__file__).resolve().parent / "out"


def by_hand_litert(pt2: Path, x: np.ndarray) -> tuple[bytes, float]:
    """litert-torch's documented PT2E int8 recipe, timed."""
    import litert_torch
    import torch
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    start = time.perf_counter()
    module = torch.export.load(str(pt2)).module()
    args = (torch.from_numpy(x[:1]),)
    q = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    graph = prepare_pt2e(torch.export.export(module, args).module(), q)
    with torch.no_grad():
        for i in range(len(x)):
            graph(torch.from_numpy(x[i : i + 1]))
    graph = convert_pt2e(graph, fold_quantize=False)
    content = litert_torch.convert(graph, args, quant_config=QuantConfig(pt2e_quantizer=q))
    return content.model_content(), time.perf_counter() - start


def by_hand_ort(pt2: Path, x: np.ndarray, folder: Path) -> tuple[bytes, float]:
    """torch.onnx.export(dynamo=True) then ORT's quant_pre_process and quantize_static, timed."""
    import torch
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    start = time.perf_counter()
    program = torch.export.load(str(pt2))
    fp32, pre, int8 = folder / "fp32.onnx", folder / "pre.onnx", folder / "int8.onnx"
    torch.onnx.export(program, (torch.from_numpy(x[:1]),), dynamo=True).save(str(fp32))
    quant_pre_process(str(fp32), str(pre))
    name = program.graph_signature.user_inputs[0]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter({name: x[i : i + 1]} for i in range(len(x)))

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(pre), str(int8), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)  # fmt: skip
    return int8.read_bytes(), time.perf_counter() - start


def accuracy(backend: str, content: bytes, x: np.ndarray, y: np.ndarray) -> float:
    from edgekit.runtime import Predictor, open_backend

    logits = Predictor(open_backend(backend, content, threads=1)).predict(x)
    return 100.0 * float(np.mean(logits.argmax(axis=1) == y))


def side_by_side(rows: list[dict], sample: np.ndarray, threads: int) -> None:
    """Host p50 of every artifact of one model at ``threads``, taking turns."""
    from edgekit.runtime import open_backend, to_model_dtype
    from edgekit.runtime.side_by_side import time_side_by_side

    models = [open_backend(r["backend"], r["content"], threads=threads) for r in rows]
    inputs = [[to_model_dtype(sample[None], m.inputs[0])] for m in models]
    for row, timing in zip(rows, time_side_by_side(models, inputs, max_seconds=30), strict=True):
        row[f"p50_{threads}"] = (timing.p50_ms, timing.p50_ci_ms)


def bench(name: str, profile: str, folder: Path) -> tuple[list[dict], list[str], int]:
    """Rows of the main table, the build's candidate table and the build's thread count."""
    from torch_models import trained

    from edgekit.bundle import verify_bundle
    from edgekit.converters.pipeline import BuildRequest, build
    from edgekit.profiles import load_profile

    m = trained(name, OUT / "torch-models")
    with np.load(m.calibration) as c, np.load(m.eval) as e:
        x_cal, x, y = c["x"], e["x"], e["y"]
    bundle = folder / f"{name}-bundle"
    request = BuildRequest(model=m.pt2, profile=load_profile(profile), out_dir=bundle,
                           calibration=m.calibration, eval_data=m.eval)  # fmt: skip
    report = build(request)
    rows = []
    for artifact in verify_bundle(bundle).artifacts:
        backend = "litert" if artifact.format == "tflite" else "onnxruntime"
        rows.append({"who": f"edgekit {artifact.variant or artifact.quantization}",
                     "file": artifact.file, "backend": backend,
                     "content": (bundle / artifact.file).read_bytes(),
                     "build_s": report.duration_s})  # fmt: skip
    content, seconds = by_hand_litert(m.pt2, x_cal)
    rows.append({"who": "litert-torch PT2E recipe by hand", "file": "-", "backend": "litert",
                 "content": content, "build_s": seconds})  # fmt: skip
    content, seconds = by_hand_ort(m.pt2, x_cal, folder)
    rows.append({"who": "ORT quantize_static by hand", "file": "-", "backend": "onnxruntime",
                 "content": content, "build_s": seconds})  # fmt: skip
    for row in rows:
        row["top1"] = accuracy(row["backend"], row["content"], x, y)
    threads = min(request.profile.runtime.threads, os.cpu_count() or 1)
    # Alternate the thread counts, three rounds each: the machine's mood shifts between rounds.
    for _ in range(3):
        for count in dict.fromkeys((1, threads)):
            side_by_side(rows, x[0], count)
            for row in rows:
                row.setdefault(f"runs_{count}", []).append(row[f"p50_{count}"])
    for row in rows:
        row["torch_top1"] = m.torch_accuracy
    candidates = [
        f"| {name} | {c.file} | {c.variant} | {_pt(c.accuracy.drop_pt)} | "
        f"{'-' if c.host_p50_ms is None else f'{c.host_p50_ms:.4f}'} | {c.verdict} |"
        for c in report.candidates
    ]
    return rows, candidates, threads


def _pt(drop: float | None) -> str:
    return "-" if drop is None else f"{drop:+.2f}"


def _p50(row: dict, threads: int) -> str:
    """The median of the rounds' p50s, with the widest interval among them."""
    runs = row[f"runs_{threads}"]
    p50 = float(np.median([p for p, _ in runs]))
    return f"{p50:.4f} (±{max(ci for _, ci in runs):.4f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+",
                        default=["rescnn", "mobilenetv3", "transformer", "gru"])  # fmt: skip
    parser.add_argument("--profile", default="x86-64")
    args = parser.parse_args()
    print(f"machine: {machine()}; load average before: {os.getloadavg()[0]:.2f}")
    table, chosen = [], []
    with tempfile.TemporaryDirectory(prefix="bench-torch-") as tmp:
        for name in args.models:
            rows, candidates, threads = bench(name, args.profile, Path(tmp))
            chosen.extend(candidates)
            for row in rows:
                line = (f"| {name} ({row['torch_top1']:.1f}) | {row['who']} ({row['file']}) "
                        f"| {row['backend']} | {row['top1']:.1f} "
                        f"| {len(row['content']) / 1024:.1f} | {_p50(row, 1)} "
                        f"| {_p50(row, threads)} | {row['build_s']:.1f} |")  # fmt: skip
                table.append(line)
                print(line, flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}\n")
    print(
        "| model (torch top-1) | artifact | runtime | top-1 % | size KiB | host p50 ms, 1 thr "
        f"| host p50 ms, {threads} thr | build s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(table))
    print("\nThe build's candidates (host p50 at the build's threads, from its own timing):\n")
    print("| model | file | variant | drop pt | host p50 ms | verdict |")
    print("|---|---|---|---|---|---|")
    print("\n".join(chosen))


if __name__ == "__main__":
    main()
