"""``edgekit profiles``: list the shipped device profiles, show one, calibrate one."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from edgekit.cli._output import err_console, out_console
from edgekit.profiles import load_profile, shipped_profiles

app = typer.Typer(help="List, show and calibrate device profiles.", no_args_is_help=True)


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
    sections = [
        (name, getattr(profile, name)) for name in ("hardware", "build", "runtime", "budgets")
    ]
    sections += [(f"throughput.{rt}", t) for rt, t in profile.throughput.items()]
    for section, values in sections:
        console.print(f"\n[bold]\\[{section}][/bold]")
        for key, value in dataclasses.asdict(values).items():
            if value is not None:
                console.print(f"{key} = {_toml_value(value)}", highlight=False)


@app.command("calibrate")
def calibrate(
    db: Annotated[
        str,
        typer.Option(
            help="The collector's database URL (sqlite:///fleet.db, postgresql+psycopg://...)."
        ),
    ],
    profile: Annotated[
        str,
        typer.Option(
            help="The profile to calibrate: a shipped name or a TOML file.", show_default=False
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write the calibrated profile here (a TOML file later builds take as --profile) "
            "[default: only print the figures].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Fit PROFILE's throughput figures to the latency the fleet measured for its bundles, and
    print the estimate error before and after."""
    from importlib import resources

    from edgekit.collector.calibration import calibrated_profile_text, fit, points_from_db

    device = load_profile(profile)
    fits = fit(device, points_from_db(db, device))
    table = Table(title=f"calibration of {device.name}")
    for column in ("runtime", "points", "int8 GMAC/s", "int8 dw GMAC/s", "fp32 GMAC/s",
                   "us/op", "error before", "error after"):  # fmt: skip
        table.add_column(column)
    for f in fits:
        old = f.before
        figures = [
            _change(None if old is None else getattr(old, name), getattr(f.after, name))
            for name in ("int8_gmacs", "int8_depthwise_gmacs", "fp32_gmacs", "op_overhead_us")
        ]
        table.add_row(
            f.runtime,
            str(f.points),
            *figures,
            "-" if f.error_before is None else f"{f.error_before:.0%}",
            f"{f.error_after:.0%}",
        )
    out_console().print(table)
    if out is None:
        return
    shipped = device.source.removesuffix(".toml")
    source = Path(device.source)
    text = (
        source.read_text(encoding="utf-8")
        if source.is_file()
        else resources.files("edgekit.device_profiles").joinpath(f"{shipped}.toml").read_text()
    )
    out.write_text(calibrated_profile_text(text, fits, points_note=f"in {db.split('://')[0]}"))
    err_console().print(f"calibrated profile written to {out}", highlight=False)


def _change(before: float | None, after: float | None) -> str:
    if after is None:
        return "-"
    return f"{after:.3g}" if before is None or before == after else f"{before:.3g} -> {after:.3g}"


def _toml_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)
