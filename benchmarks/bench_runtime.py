"""edgekit run vs a bare interpreter loop: p50 latency, peak RSS, cold start to first inference.

    python benchmarks/bench_runtime.py BUNDLE [--runs 3000] [--threads 1] [--repeat 3]

Both sides are fresh Python processes with the same model file, thread count and input; the bare
side is the loop a user writes (numpy + interpreter + model, set_tensor/invoke/get_tensor). The
median over --repeat process pairs is reported, run alternately so drift hits both sides.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from _harness import machine

BARE = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
backend, model, threads, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
x = np.load(sys.argv[5])  # one sample, float32, as the bundle's eval sample decodes
if backend == "onnxruntime":
    import onnxruntime as ort
    opts = ort.SessionOptions(); opts.intra_op_num_threads = threads; opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    def infer():
        return sess.run(None, {name: x})[0]
else:
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=model, num_threads=threads); it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    scale, zero = i["quantization"]
    info = np.iinfo(i["dtype"]) if scale else None
    feed = (np.clip(np.round(x / scale) + zero, info.min, info.max).astype(i["dtype"])
            if scale else x.astype(i["dtype"]))
    def infer():
        it.set_tensor(i["index"], feed); it.invoke(); return it.get_tensor(o["index"])
infer()
cold = (time.perf_counter() - t0) * 1e3
for _ in range(50):
    infer()
times = []
for _ in range(runs):
    s = time.perf_counter(); infer(); times.append((time.perf_counter() - s) * 1e3)
times.sort()
# The process's own high-water mark, as edgekit reports it (ru_maxrss would carry the parent's
# across fork and exec).
with open("/proc/self/status") as status:
    rss = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 1024
print(json.dumps({"p50": times[len(times) // 2], "rss": rss, "cold": cold}))
"""

EDGEKIT_COLD = r"""
import sys, time
t0 = time.perf_counter()
from pathlib import Path
from edgekit.runtime.session import DeviceSession
s = DeviceSession.open(Path(sys.argv[1]), backend=sys.argv[2], threads=int(sys.argv[3]))
s.backend.invoke(s.example_input())
print((time.perf_counter() - t0) * 1e3)
"""


# The console script of this interpreter's environment (the venv's), whatever PATH holds.
EDGEKIT = shutil.which("edgekit", path=str(Path(sys.executable).parent)) or "edgekit"


def edgekit_run(bundle: Path, backend: str, threads: int, runs: int) -> dict[str, float]:
    out = subprocess.run(
        [EDGEKIT, "run", str(bundle), "--backend", backend, "--threads", str(threads),
         "--runs", str(runs), "--warmup", "50", "--json", "-q"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout)
    return {"p50": report["latency"]["p50_ms"], "rss": report["peak_rss_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from edgekit import eval_sample
    from edgekit.bundle import verify_bundle

    manifest = verify_bundle(args.bundle)
    # The bare side gets the first eval-sample input decoded, as a plain .npy (the bundle stores
    # images compactly, with their scale); the loop it times is the same either way.
    sample = Path(tempfile.mkdtemp(prefix="bench-runtime-")) / "x.npy"
    with np.load(args.bundle / "eval_sample.npz") as npz:
        np.save(sample, eval_sample.decode(npz, "x")[:1].astype(np.float32))
    print(f"# edgekit run vs bare interpreter loop\nmachine: {machine()}\n"
          f"bundle: {manifest.bundle_id}, {args.threads} thread(s), {args.runs} timed runs, "
          f"median of {args.repeat} process pairs\n")  # fmt: skip
    print(
        "| backend | p50 edgekit / bare (ms) | ratio | peak RSS edgekit / bare (MiB) | ratio "
        "| cold start to 1st inference edgekit / bare (ms) |"
    )
    print("|---|---|---|---|---|---|")
    for artifact in manifest.artifacts:
        backend = "litert" if artifact.format == "tflite" else "onnxruntime"
        model = str(args.bundle / artifact.file)
        ek, bare, ek_cold = [], [], []
        for _ in range(args.repeat):
            ek.append(edgekit_run(args.bundle, backend, args.threads, args.runs))
            raw = subprocess.run(
                [sys.executable, "-c", BARE, backend, model, str(args.threads), str(args.runs),
                 str(sample)], capture_output=True, text=True, check=True,
            )  # fmt: skip
            bare.append(json.loads(raw.stdout))
            cold = subprocess.run(
                [sys.executable, "-c", EDGEKIT_COLD, str(args.bundle), backend, str(args.threads)],
                capture_output=True, text=True, check=True, cwd="/",
            )  # fmt: skip
            ek_cold.append(float(cold.stdout.strip().splitlines()[-1]))
            time.sleep(0.2)

        def med(rows: list[dict[str, float]], key: str) -> float:
            return statistics.median(r[key] for r in rows)

        p50_e, p50_b = med(ek, "p50"), med(bare, "p50")
        rss_e, rss_b = med(ek, "rss"), med(bare, "rss")
        print(
            f"| {backend} ({artifact.file}) | {p50_e:.4f} / {p50_b:.4f} | {p50_e / p50_b:.3f} "
            f"| {rss_e:.1f} / {rss_b:.1f} | {rss_e / rss_b:.2f} "
            f"| {statistics.median(ek_cold):.0f} / {med(bare, 'cold'):.0f} |"
        )


if __name__ == "__main__":
    main()
