"""The ``edgekit`` command line: one module per command group, composed here.

Errors are turned into output in exactly one place, :func:`main`: an ``EdgekitError`` becomes one
line on stderr and exit code 2; usage errors are reported by Typer (also exit 2).
"""

from __future__ import annotations

import sys

import typer

from edgekit.cli import (
    build,
    collect,
    daemon,
    demo,
    deploy,
    example,
    keygen,
    profiles,
    report,
    run,
    verify,
)
from edgekit.cli._output import error_line
from edgekit.errors import EdgekitError

app = typer.Typer(
    name="edgekit",
    help="Build per-device int8 model bundles (build), run and benchmark them on boards (run), "
    "collect what boards report (collect) and review it (report).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("build")(build.build)
app.command("verify")(verify.verify)
app.command("run")(run.run)
app.command("daemon")(daemon.daemon)
app.command("demo")(demo.demo)
app.command("keygen")(keygen.keygen)
app.command("example")(example.example)
app.add_typer(profiles.app, name="profiles")
app.command("collect")(collect.collect)
app.command("report")(report.report)
app.command("deploy")(deploy.deploy)
app.command("rollouts")(deploy.rollouts)
app.command("rollback")(deploy.rollback)
app.command("serve-bundles")(deploy.serve_bundles)

EXIT_BAD_INPUT = 2


def main() -> None:
    """Entry point of the ``edgekit`` console script."""
    try:
        app()
    except EdgekitError as exc:
        error_line(str(exc))
        sys.exit(EXIT_BAD_INPUT)
