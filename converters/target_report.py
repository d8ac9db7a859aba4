"""What the target's own tools made of an artifact: TensorFlow Lite Micro, Arm's Vela, the Edge TPU
compiler. Report sections (in ``build_report.json``, per shipped artifact) and the run that holds
them beside its budget checks."""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.converters.budgets import Check
from edgekit.values import Frozen


class TflmFigures(Frozen):
    """The artifact run in TensorFlow Lite Micro's interpreter on this host."""

    version: str  # tflite_micro.__version__
    host: str  # the machine the arena was measured on (struct sizes differ on a 32-bit core)
    missing_ops: tuple[str, ...]  # ops TFLM has no kernel for (it stops at the first one)
    recorded_arena_bytes: int | None  # the interpreter's own figure, in a generous arena
    arena_bytes: int | None  # the smallest arena that allocates and invokes, found by bisection
    probes: int  # arena sizes tried
    margin: float  # added to the measured arena for the RAM figure
    ram_bytes: int | None  # arena_bytes plus the margin: what the firmware should allocate
    samples: int  # eval-sample inputs run in TFLM and in LiteRT
    compared_with: str  # the LiteRT kernels the outputs were compared with
    max_diff: float | None  # largest |TFLM - LiteRT| over every output value
    diff_unit: str  # "steps" of a quantized output, or the float output's own unit
    differing: int  # output values that differ at all
    values: int  # output values compared


class VelaFigures(Frozen):
    """The int8 artifact compiled by Arm's Vela for the profile's Ethos-U NPU."""

    version: str
    accelerator: str  # Vela's --accelerator-config, from the profile's hardware.accelerator
    system_config: str
    memory_mode: str
    npu_ops: tuple[str, ...]  # TFLite ops Vela maps to the NPU (one entry per op)
    cpu_ops: tuple[str, ...]  # ops left to the Cortex-M (TFLite Micro's kernels)
    sram_bytes: int  # Vela's SRAM figure: feature maps (the NPU's part of the arena)
    flash_bytes: int  # where the weights and command stream live (its storage area below)
    flash_area: str
    cycles: int  # Vela's cycle estimate for one inference
    npu_cycles: int
    clock_hz: float
    vela_ms: float  # cycles at the configured clock
    estimate_note: str  # Vela's own caveat on these figures
    edgekit_est_ms: float | None  # edgekit's estimate from the profile's throughput figures


class EdgeTpuFigures(Frozen):
    """Whether the Edge TPU compiler ran on the artifact, and what it mapped."""

    compiler: str | None  # the edgetpu_compiler found on PATH, or None
    version: str | None
    compiled: bool
    tpu_ops: int | None  # operations the compiler mapped to the Edge TPU
    cpu_ops: int | None  # operations left to the CPU
    log: str  # the compiler's summary lines
    note: str  # what the latency estimate and the shipped artifact assume


class TargetReport(Frozen):
    """The target's own tools on one artifact; each section is set when the profile asks for
    that tool."""

    tflm: TflmFigures | None = None
    vela: VelaFigures | None = None
    edgetpu: EdgeTpuFigures | None = None
    notes: tuple[str, ...] = ()  # said once in the build output, e.g. what was not compiled


@dataclass(frozen=True)
class TargetRun:
    """A candidate as the target's tools saw it: report sections, the checks they add, and any
    file they made for the bundle (the Edge TPU compiler's model)."""

    report: TargetReport
    checks: tuple[Check, ...]
    files: tuple[tuple[str, bytes], ...] = ()
