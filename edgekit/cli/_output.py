"""Terminal output of the CLI: consoles, progress bars, and keeping native log noise away.

TensorFlow and LiteRT write their C++ logs straight to file descriptor 2. While a command runs
native code, fd 2 is pointed at a log file and edgekit's own messages go to a duplicate of the
original stderr, so the user sees progress and one clear line per problem, nothing else.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from edgekit.progress import Task

_stderr_file: TextIO | None = None


def stderr() -> TextIO:
    """A text stream on the process's original stderr, unaffected by fd-level redirection."""
    global _stderr_file
    if _stderr_file is None:
        _stderr_file = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    return _stderr_file


def err_console() -> Console:
    """Rich console for progress and human messages (stderr, so stdout stays machine-readable)."""
    return Console(file=stderr(), stderr=True)


def out_console() -> Console:
    """Rich console for results on stdout; piped output gets wide lines instead of 80 columns."""
    return Console() if sys.stdout.isatty() else Console(width=160)


def error_line(message: str) -> None:
    """Print one unwrapped error line on the original stderr."""
    print(f"edgekit: error: {message}", file=stderr(), flush=True)


def warning_line(message: str) -> None:
    """Print one unwrapped warning line on the original stderr."""
    print(f"edgekit: warning: {message}", file=stderr(), flush=True)


@contextmanager
def native_stderr_diverted() -> Iterator[Path]:
    """Send fd 2 (native library logs) to a temporary log file for the duration.

    The log is deleted on success and kept on failure; its path is yielded so the caller can
    point the user at it.
    """
    stderr()  # make sure our own stream exists before fd 2 moves
    sys.stderr.flush()
    fd, name = tempfile.mkstemp(prefix="edgekit-", suffix=".log")
    saved = os.dup(2)
    os.dup2(fd, 2)
    os.close(fd)
    ok = False
    try:
        yield Path(name)
        ok = True
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if ok:
            Path(name).unlink(missing_ok=True)


class _RichTask:
    def __init__(self, bar: Progress, task_id: TaskID) -> None:
        self._bar = bar
        self._id = task_id

    def advance(self, units: int = 1) -> None:
        self._bar.advance(self._id, units)


class RichProgress:
    """Progress bars on stderr; one bar per step, removed when the step ends."""

    def __init__(self, console: Console | None = None, *, enabled: bool = True) -> None:
        self._console = console or err_console()
        self._enabled = enabled

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Task]:
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self._console,
            transient=True,
            disable=not self._enabled or not self._console.is_terminal,
        )
        with bar:
            yield _RichTask(bar, bar.add_task(description, total=total))
