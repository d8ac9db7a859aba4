"""The device side never imports TensorFlow, Keras, onnx or the converters."""

from __future__ import annotations

import ast
import subprocess
import sys

from edgekit_testing import REPO

FORBIDDEN = (
    "tensorflow",
    "keras",
    "tf_keras",
    "onnx",
    "tf2onnx",
    "converters",
    "edgekit.converters",
)


def _imports(path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_forbidden_import_statements_in_runtime():
    offenders = []
    for path in sorted((REPO / "runtime").rglob("*.py")):
        for name in _imports(path):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN):
                offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert offenders == []


def test_running_a_bundle_loads_no_tensorflow(rpi4_build):
    """Import every runtime module and run the bundle's model; then inspect sys.modules."""
    _, bundle = rpi4_build
    script = f"""
import importlib, pkgutil, sys
import numpy as np
import edgekit.runtime as rt
for info in pkgutil.iter_modules(rt.__path__):
    importlib.import_module("edgekit.runtime." + info.name)
from edgekit.bundle import verify_bundle
from edgekit.runtime.backend import open_backend
from edgekit.runtime.predict import Predictor
from pathlib import Path
bundle = Path({str(bundle)!r})
verify_bundle(bundle)
sample = np.load(bundle / "eval_sample.npz")
out = Predictor(open_backend("litert", bundle / "model.tflite")).predict(sample["x"])
assert out.shape == (200, 10), out.shape
roots = ("tensorflow", "keras", "onnx", "tf2onnx")
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in roots or m.startswith("edgekit.converters"))
print("HEAVY:" + ",".join(heavy))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "HEAVY:", result.stdout
