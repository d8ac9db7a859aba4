"""The build side's structure holds: converters use the runtime only through its public API, and
the pipeline's modules never ask which source kind or format they hold."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from edgekit_testing import REPO

# The pipeline's own modules and what they call for every source and format. Kinds and formats
# are told apart only in the sources and exporters, and in the plug-ins that exist for one
# format: the target tools (TFLM, Vela and the Edge TPU compiler read .tflite, target_checks)
# and --emit c (c_array embeds a .tflite).
PIPELINE = (
    "pipeline", "plan", "candidates", "selection", "explore", "choice", "reporting",
    "bundle_output", "sample_output", "fallback", "budgets", "estimate", "validate", "report",
    "prune", "model_stats", "drift_reference",
)  # fmt: skip


def _tree(path):
    return ast.parse(path.read_text(), filename=str(path))


def test_converters_import_the_runtime_only_by_its_public_names():
    import edgekit.runtime as rt

    offenders = []
    for path in sorted((REPO / "converters").glob("*.py")):
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("edgekit.runtime")]
                offenders += [f"{path.name}: import {n}" for n in names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "edgekit.runtime"
            ):
                if node.module != "edgekit.runtime":
                    offenders.append(f"{path.name}: from {node.module}")
                offenders += [
                    f"{path.name}: {a.name} is not in edgekit.runtime.__all__"
                    for a in node.names
                    if a.name not in rt.__all__
                ]
    assert offenders == []


def test_every_public_runtime_name_resolves_and_import_loads_no_submodule():
    script = """
import sys
import edgekit.runtime as rt
loaded = sorted(m for m in sys.modules if m.startswith("edgekit.runtime."))
print("LOADED:" + ",".join(loaded))
for name in rt.__all__:
    assert getattr(rt, name) is not None, name
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "LOADED:"


@pytest.mark.parametrize("module", PIPELINE)
def test_the_pipeline_never_asks_which_kind_or_format_it_holds(module):
    offenders = []
    for node in ast.walk(_tree(REPO / "converters" / f"{module}.py")):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            offenders.append(f"line {node.lineno}: isinstance")
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("ModelFormat", "SourceKind")
        ):
            offenders.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
        if isinstance(node, ast.Compare):
            # Telling one kind or format from another (a literal or an enum member on the
            # other side); grouping candidates by format (c.format is fmt) is not asking.
            sides = (node.left, *node.comparators)
            asks = any(isinstance(side, ast.Constant) for side in sides)
            offenders += [
                f"line {node.lineno}: compares .{side.attr}"
                for side in sides
                if asks and isinstance(side, ast.Attribute) and side.attr in ("kind", "format")
            ]
        if isinstance(node, ast.Attribute) and node.attr in ("is_keras", "onnx", "saved_model_dir"):
            offenders.append(f"line {node.lineno}: .{node.attr}")
    assert offenders == []
