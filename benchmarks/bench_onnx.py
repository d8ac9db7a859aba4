"""edgekit's ONNX int8 vs ONNX Runtime quantize_static with default arguments; TFLite vs ONNX.

    python benchmarks/bench_onnx.py [--threads 1 2]

Same Keras model (exported to ONNX by Keras), same calibration and eval data (Fashion-MNIST).
1. edgekit build (x86-64 profile, onnx) vs ``quantize_static(fp32, int8, reader)`` with nothing
   else set, as a user would call it first: top-1 and p50 latency in ONNX Runtime.
2. The TFLite and ONNX artifacts edgekit builds for the same model: top-1, size, p50, each in
   its own runtime (LiteRT, ONNX Runtime).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _harness import machine, p50_ms, top1

OUT = Path(__file__).resolve().parent / "out"


def ort_top1(model: bytes, x: np.ndarray, y: np.ndarray) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = np.concatenate([session.run(None, {name: x[i : i + 256]})[0]
                             for i in range(0, len(x), 256)])  # fmt: skip
    return 100.0 * float(np.mean(logits.argmax(axis=1) == y))


def ort_p50(model: bytes, sample: np.ndarray, *, threads: int, runs: int = 300) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: sample[None]}
    for _ in range(30):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def default_quantize_static(fp32: bytes, calibration: np.ndarray, input_name: str) -> bytes:
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{input_name: s[None]} for s in calibration])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        quantize_static(str(src), str(dst), Reader())
        return dst.read_bytes()


def models(split):
    from edgekit.converters import examples

    small = OUT / "small-cnn-fmnist.keras"
    if not small.is_file():
        OUT.mkdir(parents=True, exist_ok=True)
        model = examples.small_cnn((28, 28, 1), 10)
        examples.train(model, split.x_train[:15000], split.y_train[:15000], epochs=3)
        model.save(small)
    found = [("small CNN 28x28", small, None)]
    mobilenet = OUT / "mobilenet-fmnist-64-e5-n20000.keras"
    if mobilenet.is_file():
        found.append(("MobileNet-style 64x64", mobilenet, 64))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    from edgekit.converters.examples import fashion_mnist
    from edgekit.converters.pipeline import BuildRequest, build
    from edgekit.profiles import load_profile

    split = fashion_mnist()
    profile = load_profile("x86-64")
    both = replace(profile, build=replace(profile.build, build_all_formats=True))
    print(f"# ONNX benchmark\nmachine: {machine()}\n")
    table1 = ["| model | tool | top-1 fp32 | top-1 int8 | size int8 (KiB) |"
              + "".join(f" p50 ms ({t} thr) |" for t in args.threads)]  # fmt: skip
    table2 = ["| model | format | runtime | top-1 int8 | size int8 (KiB) |"
              + "".join(f" p50 fp32 / int8 ms ({t} thr) |" for t in args.threads)]  # fmt: skip
    for name, path, size in models(split):
        x_cal, y_cal = split.x_train[-500:], split.y_train[-500:]
        x_test, y_test = split.x_test[:5000], split.y_test[:5000]
        if size is not None:
            import tensorflow as tf

            x_cal = tf.image.resize(x_cal, (size, size)).numpy()
            x_test = tf.image.resize(x_test, (size, size)).numpy()
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            np.savez(tmp / "calib.npz", x=x_cal, y=y_cal)
            np.savez(tmp / "eval.npz", x=x_test, y=y_test)
            report = build(
                BuildRequest(model=path, profile=both, out_dir=tmp / "b",
                             calibration=tmp / "calib.npz", eval_data=tmp / "eval.npz",
                             latency_runs=0, allow_over_budget=True)
            )  # fmt: skip
            ek_onnx = (tmp / "b" / "model.onnx").read_bytes()
            ek_tflite = (tmp / "b" / "model.tflite").read_bytes()
            from edgekit.converters.keras_source import keras_to_onnx
            from edgekit.converters.tflite_exporter import convert_float

            fp32_onnx = keras_to_onnx(path, tmp).serialized()
            import keras

            keras.saving.load_model(path).export(str(tmp / "sm"), format="tf_saved_model",
                                                  verbose=False)  # fmt: skip
            fp32_tflite = convert_float(tmp / "sm")
        import onnx

        input_name = onnx.load_model_from_string(fp32_onnx).graph.input[0].name
        ort_default = default_quantize_static(fp32_onnx, x_cal[:300], input_name)
        fp32_acc = ort_top1(fp32_onnx, x_test, y_test)
        sample = x_test[0]
        for tool, model in (("ORT quantize_static, defaults", ort_default),
                            ("edgekit build (onnx)", ek_onnx)):  # fmt: skip
            row = (
                f"| {name} | {tool} | {fp32_acc:.2f} | {ort_top1(model, x_test, y_test):.2f} "
                f"| {len(model) / 1024:.1f} |"
            )
            row += "".join(f" {ort_p50(model, sample, threads=t):.4f} |" for t in args.threads)
            table1.append(row)
        row = (
            f"| {name} | onnx | ONNX Runtime | {ort_top1(ek_onnx, x_test, y_test):.2f} "
            f"| {len(ek_onnx) / 1024:.1f} |"
        )
        row += "".join(
            f" {ort_p50(fp32_onnx, sample, threads=t):.4f} / "
            f"{ort_p50(ek_onnx, sample, threads=t):.4f} |"
            for t in args.threads
        )
        table2.append(row)
        row = (
            f"| {name} | tflite | LiteRT | {top1(ek_tflite, x_test, y_test):.2f} "
            f"| {len(ek_tflite) / 1024:.1f} |"
        )
        row += "".join(
            f" {p50_ms(fp32_tflite, sample, threads=t):.4f} / "
            f"{p50_ms(ek_tflite, sample, threads=t):.4f} |"
            for t in args.threads
        )
        table2.append(row)
        floats = ", ".join(report.artifact("onnx").float_ops) or "none"
        print(f"{name}: edgekit onnx float ops: {floats}", file=sys.stderr)
    sep1 = "|" + "---|" * (5 + len(args.threads))
    print("## edgekit ONNX int8 vs ONNX Runtime quantize_static (defaults), 5,000 test images\n")
    print("\n".join([table1[0], sep1, *table1[1:]]))
    print("\n## TFLite vs ONNX artifacts of the same model (edgekit, int8), each in its runtime\n")
    print("\n".join([table2[0], sep1, *table2[1:]]))


if __name__ == "__main__":
    main()
