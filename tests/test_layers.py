"""Layers that hold: the shared core imports no upper layer, and needs no paho until it connects.

The core is what every side shares (profiles, bundle, manifest, schema, errors, signing, vocab,
values, metrics, datasets, progress, the MQTT layer, the private helpers). It must import none of
converters, runtime, collector, fleet_report, rollout, cli or the demo: not at import time
(checked in a fresh interpreter) and not lazily inside a function (checked in the source).

``edgekit/__init__.py`` is not core: it is the public facade above every layer, naming entry
points of each (for type checkers) and loading them on first use. Importing it must still load
no upper layer (checked below with the core); test_public_api checks what its names load.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from edgekit_testing import REPO

UPPER = ("converters", "runtime", "collector", "fleet_report", "rollout", "cli", "demo", "__main__")
HEAVY = ("paho", "sqlalchemy", "plotly", "tensorflow", "keras", "onnx", "onnxruntime", "amqtt")


def _core_modules() -> dict[str, Path]:
    """Module name -> source file, for every module of the core."""
    files = [p for p in (REPO / "edgekit").glob("*.py") if p.stem not in UPPER]
    files += (REPO / "edgekit" / "mqtt").glob("*.py")
    modules = {}
    for path in sorted(files):
        package = ".".join(path.relative_to(REPO).with_suffix("").parts)
        modules[package.removesuffix(".__init__")] = path
    return modules


CORE = _core_modules()


def test_the_core_is_what_the_issue_names():
    expected = {
        "profiles", "bundle", "manifest", "schema", "errors", "signing", "vocab", "values",
        "metrics", "datasets", "progress", "mqtt", "_optional", "_version",
    }  # fmt: skip
    assert expected <= {name.split(".")[1] for name in CORE if "." in name}


def _imported_names(path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_core_module_imports_an_upper_layer_even_lazily():
    offenders = []
    for module in CORE:
        if module == "edgekit":
            continue  # the facade (see the module docstring)
        relative = module.replace(".", "/")
        path = REPO / (
            f"{relative}/__init__.py" if module in ("edgekit", "edgekit.mqtt") else f"{relative}.py"
        )
        for name in _imported_names(path):
            parts = name.split(".")
            if parts[0] == "edgekit" and len(parts) > 1 and parts[1] in UPPER:
                offenders.append(f"{module}: {name}")
    assert offenders == []


@pytest.mark.parametrize("module", sorted(CORE))
def test_importing_a_core_module_loads_no_upper_layer_and_nothing_heavy(module):
    script = f"""
import sys
import {module}
upper = {UPPER!r}
heavy = {HEAVY!r}
bad = sorted(m for m in sys.modules
             if (m.startswith("edgekit.") and m.split(".")[1] in upper)
             or m.split(".")[0] in heavy)
print("LOADED:" + ",".join(bad))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd="/"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "LOADED:", result.stdout


_BLOCK_PAHO = """
import sys
class _NoPaho:
    def find_spec(self, name, path=None, target=None):
        if name == "paho" or name.startswith("paho."):
            raise ImportError(f"{name} is blocked: this run has no paho-mqtt")
sys.meta_path.insert(0, _NoPaho())
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]]))
"""


def test_profile_and_outbox_tests_run_without_paho():
    """The MQTT fixtures import paho lazily: the unit tests of profiles and the outbox (and the
    fixtures conftest registers for every test) run with paho unimportable."""
    result = subprocess.run(
        [sys.executable, "-c", _BLOCK_PAHO, "tests/test_profiles.py", "tests/test_outbox.py"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
    assert "failed" not in result.stdout


def test_the_fixture_modules_do_not_import_paho():
    script = """
import sys
sys.path.insert(0, "tests")
import fixtures_collector, fixtures_mqtt, mosquitto_launcher
print("PAHO:" + ",".join(sorted(m for m in sys.modules if m.split(".")[0] == "paho")))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "PAHO:"
