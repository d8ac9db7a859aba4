"""What ``edgekit build`` prints of the target's own tools on an artifact: TensorFlow Lite Micro's
run, Vela's compilation, the Edge TPU compiler (or its absence)."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from edgekit.converters.report import ArtifactReport
from edgekit.converters.target_report import TflmFigures, VelaFigures


def print_target(console: Console, art: ArtifactReport) -> None:
    """The target sections of ``art``, if its profile's target has tools."""
    target = art.target
    if target is None:
        return
    name = art.artifact.file
    if target.tflm is not None:
        console.print(_tflm_table(target.tflm, name))
    if target.vela is not None:
        console.print(_vela_table(target.vela, name))
    for note in target.notes:
        console.print(f"note: {note}", highlight=False, markup=False)


def _tflm_table(tflm: TflmFigures, name: str) -> Table:
    table = Table(title=f"TensorFlow Lite Micro ({name})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("version", tflm.version)
    if tflm.missing_ops:
        table.add_row("ops", f"no kernel for {', '.join(tflm.missing_ops)}: the model cannot load")
        return table
    table.add_row("ops", "every op resolves")
    table.add_row(
        "tensor arena",
        f"{tflm.arena_bytes:,} B measured on this {tflm.host} host (smallest that allocates, "
        f"{tflm.probes} runs; the interpreter's own total {_b(tflm.recorded_arena_bytes)}); "
        f"RAM figure {_b(tflm.ram_bytes)} with {tflm.margin:.0%} margin",
    )
    table.add_row(
        "outputs",
        f"largest |TFLM - LiteRT|: {tflm.max_diff:g} ({tflm.diff_unit}) on {tflm.samples} "
        f"eval-sample inputs ({tflm.differing} of {tflm.values} values differ), against "
        f"{tflm.compared_with}",
    )
    return table


def _vela_table(vela: VelaFigures, name: str) -> Table:
    table = Table(title=f"Vela, {vela.accelerator} ({name})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("version", vela.version)
    table.add_row("system", f"{vela.system_config}, {vela.memory_mode}")
    table.add_row("ops on the NPU", _ops(vela.npu_ops))
    table.add_row("ops on the CPU", _ops(vela.cpu_ops))
    table.add_row(
        "memory",
        f"SRAM {vela.sram_bytes / 1024:.2f} KiB; "
        f"{vela.flash_area} {vela.flash_bytes / 1024:.2f} KiB",
    )
    edgekit = "unknown" if vela.edgekit_est_ms is None else f"{vela.edgekit_est_ms:.3g} ms"
    table.add_row(
        "latency",
        f"Vela {vela.vela_ms:.3g} ms ({vela.cycles:,} cycles at {vela.clock_hz / 1e6:.0f} MHz; "
        f"experimental: {vela.estimate_note}); edgekit's estimate {edgekit}",
    )
    return table


def _ops(ops: tuple[str, ...]) -> str:
    if not ops:
        return "none"
    counts = Counter(ops)
    return f"{len(ops)}: " + ", ".join(f"{op} x{n}" if n > 1 else op for op, n in counts.items())


def _b(size: int | None) -> str:
    return "-" if size is None else f"{size:,} B"
