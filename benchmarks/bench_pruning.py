"""Pruning: accuracy vs sparsity (magnitude), latency of structured pruning, gzip transfer size.

    python benchmarks/bench_pruning.py [--epochs 2] [--threads 1 2]

1. Magnitude pruning of the small Fashion-MNIST CNN at 0/50/75/90 % with fine-tuning, int8:
   top-1 of the unpruned fp32 model, of the pruned fp32 model and of the int8 artifact, the zeros
   read back from the artifact and gzip sizes. The 0 % row is the dense model fine-tuned for the
   same epochs on the same data, so extra training does not pass for pruning quality.
2. Structured pruning (50 % of channels) of a MobileNet-style CNN at 64x64 and the small CNN:
   MACs and p50 latency with a bare LiteRT loop on this machine, pruned / unpruned.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _harness import machine, p50_ms

OUT = Path(__file__).resolve().parent / "out"


def _small_cnn(split) -> Path:
    from edgekit.converters import examples

    path = OUT / "small-cnn-fmnist.keras"
    if not path.is_file():
        OUT.mkdir(parents=True, exist_ok=True)
        model = examples.small_cnn((28, 28, 1), 10)
        examples.train(model, split.x_train[:15000], split.y_train[:15000], epochs=3)
        model.save(path)
    return path


def _build(model: Path, tmp: Path, name: str, **options):
    from edgekit.converters.pipeline import BuildRequest, build
    from edgekit.profiles import load_profile

    out = tmp / name
    report = build(
        BuildRequest(
            model=model,
            profile=load_profile("x86-64"),
            out_dir=out,
            calibration=tmp / "calib.npz",
            eval_data=tmp / "eval.npz",
            latency_runs=0,
            allow_over_budget=True,
            **options,
        )
    )
    return report.artifact("tflite"), (out / "model.tflite").read_bytes()


def _write_data(tmp: Path, split, size: int | None = None) -> None:
    x_train, x_test = split.x_train, split.x_test
    if size is not None:
        import tensorflow as tf

        x_train = tf.image.resize(x_train[-1500:], (size, size)).numpy()
        x_test = tf.image.resize(x_test[:2000], (size, size)).numpy()
    np.savez(tmp / "calib.npz", x=x_train[-1000:], y=split.y_train[-1000:])
    np.savez(tmp / "eval.npz", x=x_test[:2000], y=split.y_test[:2000])


def magnitude_table(split, epochs: int) -> None:
    from edgekit.converters.tflite_inspect import inspect_tflite
    from edgekit.converters.training import fit
    from edgekit.vocab import PruneKind

    model_path = _small_cnn(split)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        _write_data(tmp, split)
        np.savez(tmp / "train.npz", x=split.x_train[30000:40000], y=split.y_train[30000:40000])
        import keras

        dense = keras.saving.load_model(model_path)
        fit(dense, split.x_train[30000:40000], split.y_train[30000:40000], epochs=epochs,
            learning_rate=3e-4)  # fmt: skip
        dense.save(tmp / "dense-finetuned.keras")
        rows = []
        report, content = _build(tmp / "dense-finetuned.keras", tmp, "dense")
        rows.append(("0 % (dense, same fine-tuning)", report, content))
        for sparsity in (0.5, 0.75, 0.9):
            report, content = _build(
                model_path, tmp, f"mag-{sparsity}", prune=PruneKind.MAGNITUDE, sparsity=sparsity,
                train_data=tmp / "train.npz", epochs=epochs,
            )  # fmt: skip
            rows.append((f"{sparsity:.0%} magnitude", report, content))
    print(
        f"\n## Magnitude pruning, small CNN, Fashion-MNIST (2,000 test images), {epochs} epochs "
        "of fine-tuning on 10,000 unseen training images, int8 (x86-64 profile)\n"
    )
    print(
        "| sparsity | top-1 unpruned fp32 | top-1 pruned fp32 | top-1 int8 | drop vs unpruned "
        "(pt) | zeros in int8 kernels | int8 size (KiB) | gzip (KiB) | gzip / dense int8 gzip |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    dense_gz = rows[0][1].sizes.gzip_bytes
    for label, r, content in rows:
        a = r.accuracy
        zeros = inspect_tflite(content).weight_sparsity  # read from the artifact itself
        pruned = a.pruned_fp32 if a.pruned_fp32 is not None else a.fp32
        print(
            f"| {label} | {a.fp32:.2f} | {pruned:.2f} | {a.quantized:.2f} | {a.drop_pt:.2f} "
            f"| {zeros:.1%} | {r.sizes.model_bytes / 1024:.1f} | {r.sizes.gzip_bytes / 1024:.1f} "
            f"| {r.sizes.gzip_bytes / dense_gz:.2f} |"
        )


def structured_table(split, threads: list[int]) -> None:
    from edgekit.vocab import PruneKind

    print(
        "\n## Structured pruning, 50 % of channels, fine-tuned 1 epoch, int8 (x86-64 profile), "
        "p50 with a bare LiteRT loop\n"
    )
    head = "| model | MACs unpruned | MACs pruned | MACs ratio | top-1 int8 unpruned / pruned |"
    head += "".join(f" p50 ms unpruned / pruned ({t} thr) | ratio ({t} thr) |" for t in threads)
    print(head)
    print("|" + "---|" * (5 + 2 * len(threads)))
    mobilenet = OUT / "mobilenet-fmnist-64-e5-n20000.keras"
    models = [("small CNN 28x28", _small_cnn(split), None)]
    if mobilenet.is_file():
        models.append(("MobileNet-style 64x64", mobilenet, 64))
    else:
        print(
            "(MobileNet-style 64x64 skipped: run bench_build_tflite.py --size 64 --train 20000 "
            "--epochs 5 first)"
        )
    for name, path, size in models:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            _write_data(tmp, split, size)
            train_x = split.x_train[30000:40000]
            if size is not None:
                import tensorflow as tf

                train_x = tf.image.resize(train_x, (size, size)).numpy()
            np.savez(tmp / "train.npz", x=train_x, y=split.y_train[30000:40000])
            base, base_model = _build(path, tmp, "base")
            pruned, pruned_model = _build(
                path, tmp, "structured", prune=PruneKind.STRUCTURED, sparsity=0.5,
                train_data=tmp / "train.npz", epochs=1,
            )  # fmt: skip
            sample = np.load(tmp / "eval.npz")["x"][0]
        line = (
            f"| {name} | {base.macs:,} | {pruned.macs:,} | {pruned.macs / base.macs:.2f} "
            f"| {base.accuracy.quantized:.2f} / {pruned.accuracy.quantized:.2f} |"
        )
        for t in threads:
            b, p = p50_ms(base_model, sample, threads=t), p50_ms(pruned_model, sample, threads=t)
            line += f" {b:.4f} / {p:.4f} | {p / b:.2f} |"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    from edgekit.converters.examples import fashion_mnist

    split = fashion_mnist()
    print(f"# Pruning benchmark\nmachine: {machine()}")
    magnitude_table(split, args.epochs)
    structured_table(split, args.threads)


if __name__ == "__main__":
    main()
