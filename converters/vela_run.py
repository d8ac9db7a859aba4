"""An int8 ``.tflite`` compiled by Arm's Vela for an Ethos-U NPU: which ops the NPU runs, how much
SRAM and flash the compiled network takes, and Vela's cycle estimate.

Vela runs as ``python -m ethosu.vela`` in a child process (its C++ core prints past Python's
stdout redirection). Its figures are read from the CSV files it writes (``--verbose-performance``
adds the per-layer one, whose ``Target`` column says NPU or CPU), not from its console text.
The system configuration and memory mode come from Vela's own ``Arm/vela.ini``, per NPU family.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from edgekit._optional import require
from edgekit.converters.target_report import VelaFigures
from edgekit.errors import ConversionError, ProfileError

VELA_CONFIG = "Arm/vela.ini"
# Per NPU family: the system configuration (clocks, bus widths) and memory mode of Vela's ini
# that fit a typical microcontroller with it: the U55 shares SRAM with the Cortex-M and reads
# weights from flash; U65/U85 systems have DRAM beside a dedicated SRAM.
SYSTEMS = {
    "ethos-u55": ("Ethos_U55_High_End_Embedded", "Shared_Sram"),
    "ethos-u65": ("Ethos_U65_High_End", "Dedicated_Sram"),
    "ethos-u85": ("Ethos_U85_SYS_DRAM_Mid", "Dedicated_Sram"),
}
# Vela's own word on its performance figures (it prints this above them).
ESTIMATE_NOTE = (
    "Vela's internal compiler estimate (Vela: run on an FVP model or FPGA for performance numbers)"
)
# The summary's storage-area names and the columns holding what each area uses (KiB).
_AREA_COLUMNS = {
    "SRAM": "sram_memory_used",
    "DRAM": "dram_memory_used",
    "On-chip Flash": "on_chip_flash_memory_used",
    "Off-chip Flash": "off_chip_flash_memory_used",
}
_SECONDS = 600


def is_ethos_u(accelerator: str) -> bool:
    """Whether a profile's ``hardware.accelerator`` names an Arm Ethos-U NPU."""
    return accelerator.lower().startswith("ethos-u")


def vela_version() -> str:
    """The installed ethos-u-vela's version."""
    require("ethosu.vela", extra="mcu", package="ethos-u-vela")
    try:
        return version("ethos-u-vela")
    except PackageNotFoundError:
        return "unknown"


def run_vela(content: bytes, *, accelerator: str, file_name: str) -> VelaFigures:
    """Compile ``content`` with Vela for ``accelerator`` (e.g. ``ethos-u55-128``)."""
    found = vela_version()
    accelerator = vela_accelerator(accelerator)
    system, memory_mode = SYSTEMS[accelerator.rsplit("-", 1)[0]]
    with tempfile.TemporaryDirectory(prefix="edgekit-vela-") as tmp:
        work = Path(tmp)
        model = work / "model.tflite"
        model.write_bytes(content)
        argv = [sys.executable, "-m", "ethosu.vela", str(model),
                "--accelerator-config", accelerator, "--config", VELA_CONFIG,
                "--system-config", system, "--memory-mode", memory_mode,
                "--output-dir", str(work / "out"), "--verbose-performance"]  # fmt: skip
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=_SECONDS)
        except subprocess.TimeoutExpired as exc:
            raise ConversionError(f"Vela took more than {_SECONDS} s on {file_name}") from exc
        summary_file = work / "out" / f"model_summary_{system}.csv"
        if done.returncode != 0 or not summary_file.is_file():
            said = _last_line(done.stderr) or _last_line(done.stdout) or f"exit {done.returncode}"
            raise ConversionError(f"Vela {found} could not compile {file_name}: {said}")
        summary = _rows(summary_file)[0]
        layers = _rows(work / "out" / "model_per-layer.csv")
    npu, cpu = _placement(layers)
    area = summary["weights_storage_area"]
    cycles = int(float(summary["cycles_total"]))
    clock = float(summary["core_clock"])
    return VelaFigures(
        version=found,
        accelerator=accelerator,
        system_config=system,
        memory_mode=memory_mode,
        npu_ops=npu,
        cpu_ops=cpu,
        sram_bytes=_bytes(summary["sram_memory_used"]),
        flash_bytes=_bytes(summary[_AREA_COLUMNS.get(area, "off_chip_flash_memory_used")]),
        flash_area=area,
        cycles=cycles,
        npu_cycles=int(float(summary["cycles_npu"])),
        clock_hz=clock,
        vela_ms=cycles / clock * 1e3,
        estimate_note=ESTIMATE_NOTE,
        edgekit_est_ms=None,
    )


def vela_accelerator(accelerator: str) -> str:
    """``accelerator`` as Vela names it; ProfileError naming Vela's choices otherwise (and
    MissingDependencyError without Vela)."""
    vela_version()
    from ethosu.vela.architecture_features import Accelerator

    known = [a.value for a in Accelerator]
    if accelerator.lower() not in known:
        raise ProfileError(
            f"hardware.accelerator {accelerator!r} is not an Ethos-U configuration Vela "
            f"knows ({', '.join(known)})"
        )
    return accelerator.lower()


def _placement(layers: list[dict[str, str]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """TFLite ops (one entry each) on the NPU and on the CPU. Vela lists the operations it
    lowers an op to (a softmax becomes dozens); they share the op's name, and an op any of
    whose operations runs on the CPU counts as CPU."""
    targets: dict[tuple[str, str], bool] = {}
    for row in layers:
        key = (row["Original Operator"], row["Name"])
        targets[key] = targets.get(key, False) or row["Target"].strip().upper() == "CPU"
    npu = tuple(op for (op, _), on_cpu in targets.items() if not on_cpu)
    cpu = tuple(op for (op, _), on_cpu in targets.items() if on_cpu)
    return npu, cpu


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise ConversionError(f"Vela wrote no {path.name}; its output format may have changed")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ConversionError(f"Vela's {path.name} has no rows")
    return rows


def _bytes(kib: str) -> int:
    return round(float(kib) * 1024)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""
