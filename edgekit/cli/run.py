"""``edgekit run``: load a bundle on this machine, benchmark it, measure its accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgekit.cli._output import RichProgress, err_console, native_stderr_diverted, out_console


def run(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.", show_default=False)],
    runs: Annotated[int, typer.Option(min=1, help="Timed runs (after warm-up).")] = 100,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed warm-up runs.")] = 10,
    duration: Annotated[
        float,
        typer.Option(min=0.0, help="Keep timing until this many seconds have passed too."),
    ] = 0.0,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1, help="Interpreter threads [default: the profile's].", show_default=False
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="litert, tflite-runtime or onnxruntime [default: the best installed one for the "
            "bundle's preferred artifact].",
            show_default=False,
        ),
    ] = None,
    device_id: Annotated[
        str | None,
        typer.Option(
            help="Device id in the report [default: from the hostname].", show_default=False
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report (edgekit.report/1) as JSON.")
    ] = False,
    trust_key: Annotated[
        Path | None,
        typer.Option(
            envvar="EDGEKIT_TRUST_KEY",
            help="Load only a bundle signed by this Ed25519 public key.",
            show_default=False,
        ),
    ] = None,
    reselect: Annotated[
        bool,
        typer.Option(
            "--reselect",
            help="Measure a several-candidate bundle's candidates again instead of using the "
            "choice remembered for this bundle and host.",
        ),
    ] = False,
    select_seconds: Annotated[
        float,
        typer.Option(min=0.5, help="Time budget for timing the candidates side by side."),
    ] = 20.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Verify BUNDLE, load it, time inference (init, first run, warm-up, timed runs) and measure
    accuracy on its eval sample."""
    from edgekit.runtime.host import default_device_id
    from edgekit.runtime.measure import measure, to_report
    from edgekit.runtime.selection import default_cache_dir
    from edgekit.runtime.session import BoardChoice, DeviceSession

    with native_stderr_diverted():
        choice = BoardChoice(cache_dir=default_cache_dir(), reselect=reselect,
                             max_seconds=select_seconds)  # fmt: skip
        session = DeviceSession.open(bundle, backend=backend, threads=threads,
                                     trust_key=trust_key, choice=choice)  # fmt: skip
        measurement = measure(
            session,
            runs=runs,
            warmup=warmup,
            min_seconds=duration,
            progress=RichProgress(enabled=not quiet),
        )
    report = to_report(session, measurement, device_id=device_id or default_device_id())
    if json_output:
        typer.echo(report.to_json().decode())
        return
    lat = report.latency
    table = Table(title=f"edgekit run: {report.bundle_id}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("artifact", f"{report.artifact} ({report.format}) on {report.backend} "
                  f"{report.backend_version}, {report.threads} thread(s)")  # fmt: skip
    table.add_row("init / first inference", f"{lat.init_ms:.2f} ms / {lat.first_ms:.3f} ms")
    table.add_row(
        f"latency ({lat.count} runs)",
        f"p50 {lat.p50_ms:.3f}  p90 {lat.p90_ms:.3f}  p99 {lat.p99_ms:.3f}  "
        f"mean {lat.mean_ms:.3f} ± {lat.std_ms:.3f}  min {lat.min_ms:.3f}  max {lat.max_ms:.3f} ms",
    )
    est = report.build.est_latency_ms
    table.add_row("estimated on the profile's board", "unknown" if est is None else f"{est:.3f} ms")
    if report.accuracy is not None:
        acc = report.accuracy
        built = report.build.quantized
        table.add_row(
            f"{acc.metric} on eval sample ({acc.samples})",
            f"{acc.value:.2f}" + (f" (build: {built:.2f})" if built is not None else ""),
        )
    table.add_row("peak RSS", f"{report.peak_rss_mb:.1f} MiB")
    out_console().print(table)
    if report.accuracy is None:
        err_console().print("no eval sample in the bundle: accuracy not measured")
