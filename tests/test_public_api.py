"""The curated public API of the ``edgekit`` package (as httpx keeps one)."""

import subprocess
import sys
from types import ModuleType

import edgekit


def _public_names() -> set[str]:
    """What ``edgekit`` offers without an underscore, submodules aside: every entry point."""
    for name in edgekit.__all__:  # load every lazy name, so nothing hides behind __getattr__
        getattr(edgekit, name)
    return {
        name
        for name in dir(edgekit)
        if not name.startswith("_") and not isinstance(getattr(edgekit, name), ModuleType)
    }


def test_all_is_sorted_and_is_exactly_the_public_names():
    assert edgekit.__all__ == sorted(edgekit.__all__)
    assert _public_names() | {"__version__"} == set(edgekit.__all__)


def test_the_entry_points_a_python_user_calls_are_public():
    entry_points = (
        "build", "BuildRequest", "BuildReport", "DeviceSession", "serve", "Store",
        "verify_bundle", "load_profile", "Manifest", "Report", "parse_report",
    )  # fmt: skip
    for name in entry_points:
        assert name in edgekit.__all__, name
    assert callable(edgekit.build)
    assert callable(edgekit.DeviceSession.open)


def test_every_error_derives_from_edgekit_error():
    errors = [getattr(edgekit, n) for n in edgekit.__all__ if n.endswith("Error")]
    assert len(errors) >= 12
    for error in errors:
        assert issubclass(error, edgekit.EdgekitError)


def test_importing_edgekit_loads_nothing_heavy():
    script = (
        "import sys, edgekit\n"
        "heavy = [m for m in ('pydantic', 'numpy', 'tensorflow', 'onnx', 'sqlalchemy', 'paho')"
        " if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert out.strip() == "[]"
