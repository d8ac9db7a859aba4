"""Helpers the tests share: running the CLI as a user would, checking its error contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Fault scenarios' end-to-end counts, printed at the end of the run (conftest.py).
FAULT_FIGURES: pytest.StashKey[list[dict[str, object]]] = pytest.StashKey()
EDGEKIT = str(Path(sys.executable).with_name("edgekit"))


def run_edgekit(*args: str | Path, cwd: Path | None = None, timeout: float = 600):
    """Run the installed ``edgekit`` console script as a user would."""
    return subprocess.run(
        [EDGEKIT, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def assert_one_clear_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, exactly one 'edgekit: error:' line on stderr naming the problem, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgekit: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def assert_one_error_line(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2 and exactly one 'edgekit: error:' line naming the problem, no traceback; for
    long-running commands that print progress lines before failing."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgekit: error:")]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
