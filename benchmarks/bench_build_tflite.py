"""edgekit build vs a hand-written LiteRT PTQ script, on a MobileNet-style CNN and Fashion-MNIST.

    python benchmarks/bench_build_tflite.py [--size 28] [--epochs 6] [--threads 1 2]

Prints accuracy (fp32/int8), sizes, p50 latency of fp32 and int8 artifacts with a bare LiteRT
loop on this machine, and the int8/fp32 latency ratio, side by side. Needs Debian's
dataset-fashion-mnist. The trained model is cached under benchmarks/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _harness import machine, p50_ms, top1

OUT = Path(__file__).resolve().parent / "out"


def _data(size: int):
    from edgekit.converters import examples

    split = examples.fashion_mnist()
    if size == 28:
        return split
    import tensorflow as tf

    def resize(x):
        return tf.image.resize(x, (size, size)).numpy()

    return examples.Split(resize(split.x_train), split.y_train, resize(split.x_test), split.y_test)


def _model(split, size: int, epochs: int, train_n: int):
    import keras

    from edgekit.converters import examples

    path = OUT / f"mobilenet-fmnist-{size}-e{epochs}-n{train_n}.keras"
    if not path.is_file():
        OUT.mkdir(parents=True, exist_ok=True)
        model = examples.mobilenet_style((size, size, 1), 10)
        print(f"training {model.name} ({model.count_params():,} params) ...", file=sys.stderr)
        examples.train(model, split.x_train[:train_n], split.y_train[:train_n], epochs=epochs)
        model.save(path)
    return path, keras.saving.load_model(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=28, help="input side in pixels")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train", type=int, default=30000, help="training samples")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import baseline_litert_ptq as baseline

    from edgekit.converters.pipeline import BuildRequest, build
    from edgekit.converters.source_registry import open_source
    from edgekit.profiles import load_profile
    from edgekit.vocab import ModelFormat

    split = _data(args.size)
    model_path, model = _model(split, args.size, args.epochs, args.train)
    x_test, y_test = split.x_test, split.y_test

    artifacts: dict[str, dict[str, bytes]] = {}
    artifacts["hand-written PTQ"] = {
        "fp32": baseline.convert_fp32(model),
        "int8": baseline.convert_int8(model, split.x_train),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        np.savez(tmp_path / "calib.npz", x=split.x_train[-1000:], y=split.y_train[-1000:])
        np.savez(tmp_path / "eval.npz", x=x_test, y=y_test)
        report = build(
            BuildRequest(
                model=model_path,
                profile=load_profile("x86-64"),
                out_dir=tmp_path / "bundle",
                calibration=tmp_path / "calib.npz",
                eval_data=tmp_path / "eval.npz",
                latency_runs=0,
                allow_over_budget=True,
            )
        )
        source = open_source(model_path, work_dir=tmp_path)
        artifacts["edgekit build (x86-64)"] = {
            "fp32": source.exporter(ModelFormat.TFLITE, work_dir=tmp_path).float_model(),
            "int8": (tmp_path / "bundle" / "model.tflite").read_bytes(),
        }

    rows = []
    for name, pair in artifacts.items():
        row = {"tool": name}
        row["top1_fp32"] = top1(pair["fp32"], x_test, y_test)
        row["top1_int8"] = top1(pair["int8"], x_test, y_test)
        row["drop_pt"] = row["top1_fp32"] - row["top1_int8"]
        row["kb_fp32"] = len(pair["fp32"]) / 1024
        row["kb_int8"] = len(pair["int8"]) / 1024
        for t in args.threads:
            f = p50_ms(pair["fp32"], x_test[0], threads=t)
            q = p50_ms(pair["int8"], x_test[0], threads=t)
            row[f"p50_fp32_ms_t{t}"], row[f"p50_int8_ms_t{t}"], row[f"ratio_t{t}"] = f, q, q / f
        rows.append(row)

    print(
        f"# edgekit build vs hand-written LiteRT PTQ — MobileNet-style CNN, Fashion-MNIST "
        f"{args.size}x{args.size}, {len(y_test)} test images"
    )
    print(f"machine: {machine()}")
    print(
        f"model: {model.count_params():,} params, {report.primary.macs:,} MACs; edgekit status "
        f"{report.status}, float ops: {', '.join(report.primary.float_ops) or 'none'}\n"
    )
    head = "| tool | top-1 fp32 | top-1 int8 | drop (pt) | size fp32 (KiB) | size int8 (KiB) |"
    head += "".join(f" p50 fp32 / int8 ms ({t} thr) | int8/fp32 ({t} thr) |" for t in args.threads)
    print(head)
    print("|" + "---|" * (6 + 2 * len(args.threads)))
    for r in rows:
        line = (
            f"| {r['tool']} | {r['top1_fp32']:.2f} | {r['top1_int8']:.2f} | {r['drop_pt']:.2f} "
            f"| {r['kb_fp32']:.1f} | {r['kb_int8']:.1f} |"
        )
        for t in args.threads:
            line += (
                f" {r[f'p50_fp32_ms_t{t}']:.3f} / {r[f'p50_int8_ms_t{t}']:.3f} "
                f"| {r[f'ratio_t{t}']:.2f} |"
            )
        print(line)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"bench_build_tflite-{args.size}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
