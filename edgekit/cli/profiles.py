"""``edgekit profiles``: list the shipped device profiles, show one."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer
from rich.table import Table

from edgekit.cli._output import out_console
from edgekit.profiles import load_profile, shipped_profiles

app = typer.Typer(help="List and show device profiles.", no_args_is_help=True)


@app.command("list")
def list_profiles() -> None:
    """List the shipped device profiles with their key figures."""
    table = Table(title="device profiles")
    table.add_column("name", no_wrap=True)
    for column in ("board", "build", "runtime", "int8 / fp32 GMAC/s per runtime", "budgets"):
        table.add_column(column)
    for name in shipped_profiles():
        p = load_profile(name)
        table.add_row(
            p.name,
            p.description,
            f"{'+'.join(p.build.formats)} {p.build.quantization}",
            f"{p.runtime.backend} x{p.runtime.threads}",
            "\n".join(
                f"{runtime}: {t.int8_gmacs:g} / {t.fp32_gmacs:g}"
                for runtime, t in p.throughput.items()
            ),
            f"drop <= {p.budgets.max_accuracy_drop_pt:g} pt, <= {p.budgets.max_model_mb:g} MB, "
            f"<= {p.budgets.max_latency_ms:g} ms",
        )
    out_console().print(table)


@app.command("show")
def show(
    name: Annotated[
        str, typer.Argument(help="Profile name or path to a TOML file.", show_default=False)
    ],
) -> None:
    """Show every setting of one profile (validated, with defaults filled in)."""
    profile = load_profile(name)
    console = out_console()
    console.print(f"[bold]{profile.name}[/bold]: {profile.description}")
    console.print(f"source {profile.source}, sha256 {profile.digest}")
    for section in ("hardware", "build", "runtime", "budgets"):
        console.print(f"\n[bold]\\[{section}][/bold]")
        for key, value in dataclasses.asdict(getattr(profile, section)).items():
            console.print(f"{key} = {_toml_value(value)}", highlight=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)
