"""Progress reporting from library code, without tying the library to a terminal.

Long steps (calibration, evaluation, benchmarking) call ``progress.task(...)`` and ``advance()``;
the CLI passes a rich-backed implementation, tests and library users get the silent default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Task(Protocol):
    """One step with a known number of units of work."""

    def advance(self, units: int = 1) -> None:
        """Record ``units`` more units done."""


class Progress(Protocol):
    """Something that can show progress of named steps."""

    def task(self, description: str, total: int) -> AbstractContextManager[Task]:
        """A context for one step of ``total`` units."""
        ...


class _SilentTask:
    def advance(self, units: int = 1) -> None:
        pass


class SilentProgress:
    """Progress that shows nothing."""

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Task]:
        yield _SilentTask()
