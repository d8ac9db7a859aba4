"""The ``edgekit`` command line: one module per command, listed in :mod:`edgekit.cli.commands`.

``edgekit --help`` is answered from that list without importing Typer or any command (it starts
in a tenth of a second); everything else goes through the Typer application (``app``, built on
first use), which imports a command's module only when that command runs.

Errors are turned into output in exactly one place, :func:`main`: an ``EdgekitError`` becomes one
line on stderr and exit code 2; usage errors are reported by Typer (also exit 2).
"""

from __future__ import annotations

import sys
from typing import Any

from edgekit.cli.commands import COMMANDS, top_help

EXIT_BAD_INPUT = 2
_TOP_HELP = (["--help"], ["-h"])

__all__ = ["COMMANDS", "EXIT_BAD_INPUT", "app", "main"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from edgekit.cli._app import make_app

        globals()["app"] = value = make_app()
        return value
    raise AttributeError(f"module 'edgekit.cli' has no attribute {name!r}")


def main() -> None:
    """Entry point of the ``edgekit`` console script."""
    if sys.argv[1:] in _TOP_HELP:
        sys.stdout.write(top_help())
        return
    from edgekit.cli._app import make_app
    from edgekit.errors import EdgekitError

    try:
        make_app()()
    except EdgekitError as exc:
        from edgekit.cli._output import error_line

        error_line(str(exc))
        sys.exit(EXIT_BAD_INPUT)
