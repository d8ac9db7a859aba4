"""The target's own tools on every candidate, one plug-in per kind of target, chosen by the profile.

- ``runtime.backend = "tflite-micro"``: TensorFlow Lite Micro runs the artifact
  (:mod:`.tflm_run`). Every op must resolve, its outputs must equal LiteRT's within one step of
  int8 rounding, and its measured arena (plus :data:`~.tflm_run.ARENA_MARGIN`) is the RAM figure
  checked against the budget, in place of the op table's lower bound.
- ``hardware.accelerator = "ethos-u…"`` (a Vela accelerator configuration, e.g.
  ``ethos-u55-128``): Arm's Vela compiles the int8 artifact (:mod:`.vela_run`); its SRAM and
  flash figures are checked against the RAM and model-size budgets, its cycle estimate is
  reported beside edgekit's own. An op TFLM lacks does not fail where Vela runs it on the NPU.
- ``edgetpu`` as accelerator or delegate: the Edge TPU compiler runs when it is on PATH
  (:mod:`.edgetpu_run`); without it the build says the artifact is not compiled.

The runs happen once per candidate, before the choice (:func:`run_on_target`); the choice and
the report read them from the candidate (:func:`with_target`, :func:`target_report`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edgekit.converters.budgets import Check
from edgekit.converters.candidates import Candidate
from edgekit.converters.edgetpu_run import compiled_name, find_compiler, run_edgetpu
from edgekit.converters.explore import runs_on_board
from edgekit.converters.plan import Plan
from edgekit.converters.sample_output import DEFAULT_SAMPLES
from edgekit.converters.target_report import TargetReport, TargetRun, TflmFigures, VelaFigures
from edgekit.converters.tflm_run import run_tflm, tflm_version
from edgekit.converters.validate import Reference
from edgekit.converters.vela_run import is_ethos_u, run_vela, vela_accelerator
from edgekit.profiles import DeviceProfile
from edgekit.progress import Progress
from edgekit.vocab import BackendName, CheckStatus, ModelFormat, Quantization

TFLM_OPS = "ops in TFLite Micro"
TFLM_RAM = "RAM (TFLM arena)"
TFLM_OUTPUTS = "outputs: TFLM vs LiteRT"
VELA_SRAM = "SRAM (Vela)"
VELA_FLASH = "flash (Vela)"
# The target checks that judge whether a candidate may ship (the choice adds them to its gates).
TARGET_GATES = frozenset({TFLM_OPS, TFLM_RAM, TFLM_OUTPUTS, VELA_SRAM, VELA_FLASH})
# The op-table check a measured arena replaces (weights sit in flash on a microcontroller).
ESTIMATED_RAM = "RAM (estimated)"
# "Within int8 rounding": TFLM and LiteRT's reference-style kernels may round one value apart.
OUTPUT_STEPS = 1.0
_FLOAT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class _Inputs:
    xs: tuple[np.ndarray, ...]  # float, batch first
    compiler: str | None  # the Edge TPU compiler found on PATH


_Runner = Callable[[Plan, Candidate, _Inputs], TargetRun]


def run_on_target(
    plan: Plan, candidates: Sequence[Candidate], *, reference: Reference, progress: Progress
) -> tuple[Candidate, ...]:
    """``candidates`` with what the profile's target tools make of each ``.tflite`` one."""
    runners = [run for applies, run in _TARGETS if applies(plan.profile)]
    if not runners:
        return tuple(candidates)
    found = _inputs(plan, candidates, reference)
    done = []
    for candidate in candidates:
        reference_only = not runs_on_board(plan, candidate)
        # These tools read .tflite; fp32 where the board runs int8 only is a timing reference.
        if candidate.format is not ModelFormat.TFLITE or reference_only:
            done.append(candidate)
            continue
        with progress.task(f"Target tools: {candidate.label}", total=0):
            parts = [run(plan, candidate, found) for run in runners]
        done.append(dataclasses.replace(candidate, target=_combined(parts)))
    return tuple(done)


def check_target_tools(profile: DeviceProfile) -> None:
    """Before any conversion: the tools ``profile``'s target needs are installed, and its
    accelerator is one they know (an error naming the extra or the key otherwise)."""
    if _is_tflm(profile):
        tflm_version()
    if is_ethos_u(profile.hardware.accelerator):
        vela_accelerator(profile.hardware.accelerator)


def with_target(checks: tuple[Check, ...], candidate: Candidate) -> tuple[Check, ...]:
    """``checks`` (the budgets') with the target's: a measured arena stands in for the
    estimated RAM, the other target checks follow."""
    run = candidate.target
    if run is None:
        return checks
    ram = next((c for c in run.checks if c.name == TFLM_RAM), None)
    others = tuple(c for c in run.checks if c is not ram)
    if ram is None:
        return checks + others
    return tuple(ram if c.name == ESTIMATED_RAM else c for c in checks) + others


def target_report(candidate: Candidate) -> TargetReport | None:
    """The target tools' report sections of ``candidate``, if any ran."""
    return None if candidate.target is None else candidate.target.report


def target_files(candidate: Candidate) -> dict[str, bytes]:
    """Files the target tools made for the bundle from ``candidate``."""
    return {} if candidate.target is None else dict(candidate.target.files)


def _inputs(plan: Plan, candidates: Sequence[Candidate], reference: Reference) -> _Inputs:
    """The eval sample's inputs (the samples the bundle's eval sample is drawn from)."""
    if reference.data is not None:
        xs = reference.data.take(plan.request.eval_sample_size or DEFAULT_SAMPLES).xs
    else:  # no data at all: one all-zero input still shows the ops and the arena
        specs = candidates[0].io.inputs
        xs = tuple(np.zeros((1, *[d or 1 for d in s.shape[1:]]), np.float32) for s in specs)
    return _Inputs(xs=xs, compiler=find_compiler())


def _tflm(plan: Plan, candidate: Candidate, found: _Inputs) -> TargetRun:
    figures = run_tflm(candidate.content, candidate.io, found.xs, file_name=candidate.file_name)
    return TargetRun(TargetReport(tflm=figures), tflm_checks(plan.profile, figures))


def tflm_checks(profile: DeviceProfile, tflm: TflmFigures) -> tuple[Check, ...]:
    """Ops, RAM and outputs of a TFLM run against ``profile``."""
    where = f"TensorFlow Lite Micro {tflm.version}"
    ops = Check(TFLM_OPS, float(len(tflm.missing_ops)), 0.0, "missing ops",
                CheckStatus.FAIL if tflm.missing_ops else CheckStatus.PASS,
                f"{', '.join(tflm.missing_ops)} ({where} has no kernel)" if tflm.missing_ops
                else f"every op resolves ({where})")  # fmt: skip
    limit_kib = profile.budgets.max_ram_mb * 1024
    if tflm.ram_bytes is None or tflm.arena_bytes is None or tflm.max_diff is None:
        unknown = f"not measured: {where} cannot load the model"
        return (ops, Check(TFLM_RAM, None, limit_kib, "KiB", CheckStatus.NOT_MEASURED, unknown),
                Check(TFLM_OUTPUTS, None, OUTPUT_STEPS, "steps", CheckStatus.NOT_MEASURED,
                      unknown))  # fmt: skip
    ram_kib = tflm.ram_bytes / 1024
    ram = Check(TFLM_RAM, ram_kib, limit_kib, "KiB",
                CheckStatus.PASS if ram_kib <= limit_kib else CheckStatus.FAIL,
                f"{tflm.ram_bytes} B: {tflm.arena_bytes} B measured (smallest arena that "
                f"allocates, {tflm.host} host) + {tflm.margin:.0%}")  # fmt: skip
    tolerance = OUTPUT_STEPS if tflm.diff_unit == "steps" else _FLOAT_TOLERANCE
    outputs = Check(TFLM_OUTPUTS, tflm.max_diff, tolerance, tflm.diff_unit,
                    CheckStatus.PASS if tflm.max_diff <= tolerance else CheckStatus.FAIL,
                    f"largest difference on {tflm.samples} eval-sample inputs, "
                    f"{tflm.differing} of {tflm.values} values differ; against "
                    f"{tflm.compared_with}")  # fmt: skip
    return ops, ram, outputs


def _vela(plan: Plan, candidate: Candidate, found: _Inputs) -> TargetRun:
    if candidate.artifact.scheme is not Quantization.INT8:
        note = f"{candidate.file_name}: Vela compiles int8 models only; not run on this one"
        return TargetRun(TargetReport(notes=(note,)), ())
    figures = run_vela(candidate.content, accelerator=plan.profile.hardware.accelerator,
                       file_name=candidate.file_name)  # fmt: skip
    estimate = candidate.estimate.ms if candidate.estimate is not None else None
    figures = figures.model_copy(update={"edgekit_est_ms": estimate})
    return TargetRun(TargetReport(vela=figures), vela_checks(plan.profile, figures))


def vela_checks(profile: DeviceProfile, vela: VelaFigures) -> tuple[Check, ...]:
    """Vela's SRAM and flash figures against ``profile``'s RAM and model-size budgets."""
    budgets, where = profile.budgets, f"Vela {vela.version}, {vela.accelerator}"
    sram_kib, limit_kib = vela.sram_bytes / 1024, budgets.max_ram_mb * 1024
    flash_mb = vela.flash_bytes / 2**20
    return (
        Check(VELA_SRAM, sram_kib, limit_kib, "KiB",
              CheckStatus.PASS if sram_kib <= limit_kib else CheckStatus.FAIL,
              f"{where}, {vela.memory_mode}: the NPU's feature maps"),
        Check(VELA_FLASH, flash_mb, budgets.max_model_mb, "MB",
              CheckStatus.PASS if flash_mb <= budgets.max_model_mb else CheckStatus.FAIL,
              f"{where}: weights and command stream in {vela.flash_area}"),
    )  # fmt: skip


def _edgetpu(plan: Plan, candidate: Candidate, found: _Inputs) -> TargetRun:
    if candidate.artifact.scheme is not Quantization.INT8:
        note = f"{candidate.file_name}: the Edge TPU runs full-int8 models only"
        return TargetRun(TargetReport(notes=(note,)), ())
    figures, compiled = run_edgetpu(candidate.content, file_name=candidate.file_name,
                                    compiler=found.compiler)  # fmt: skip
    files = () if compiled is None else ((compiled_name(candidate.file_name), compiled),)
    return TargetRun(TargetReport(edgetpu=figures, notes=(figures.note,)), (), files)


def _combined(parts: Sequence[TargetRun]) -> TargetRun:
    """One run from each kind's; ops TFLM lacks but Vela puts on the NPU do not fail."""
    report = TargetReport(
        tflm=next((p.report.tflm for p in parts if p.report.tflm), None),
        vela=next((p.report.vela for p in parts if p.report.vela), None),
        edgetpu=next((p.report.edgetpu for p in parts if p.report.edgetpu), None),
        notes=tuple(n for p in parts for n in p.report.notes),
    )
    checks = tuple(c for p in parts for c in p.checks)
    if report.tflm is not None and report.vela is not None and report.tflm.missing_ops:
        checks = tuple(_on_npu(c, report.tflm, report.vela) if c.name == TFLM_OPS else c
                       for c in checks)  # fmt: skip
    return TargetRun(report, checks, tuple(f for p in parts for f in p.files))


def _on_npu(check: Check, tflm: TflmFigures, vela: VelaFigures) -> Check:
    """The op check counting only the ops TFLM lacks that Vela leaves to the CPU."""
    npu = {_plain(op) for op in vela.npu_ops} - {_plain(op) for op in vela.cpu_ops}
    on_cpu = [op for op in tflm.missing_ops if _plain(op) not in npu]
    covered = [op for op in tflm.missing_ops if op not in on_cpu]
    detail = check.detail + (f"; on the NPU (Vela): {', '.join(covered)}" if covered else "")
    return dataclasses.replace(check, value=float(len(on_cpu)), detail=detail,
                               status=CheckStatus.FAIL if on_cpu else CheckStatus.PASS)  # fmt: skip


def _plain(op: str) -> str:
    """An op name as TFLite (GELU, TOPK_V2) and Vela (Gelu, TopKV2) both spell it."""
    return op.replace("_", "").upper()


def _is_tflm(profile: DeviceProfile) -> bool:
    return profile.runtime.backend is BackendName.TFLITE_MICRO


def _is_edgetpu(profile: DeviceProfile) -> bool:
    return "edgetpu" in (profile.hardware.accelerator.lower(), profile.runtime.delegate.lower())


# Which plug-in runs for which profile, in report order.
_TARGETS: tuple[tuple[Callable[[DeviceProfile], bool], _Runner], ...] = (
    (_is_tflm, _tflm),
    (lambda p: is_ethos_u(p.hardware.accelerator), _vela),
    (_is_edgetpu, _edgetpu),
)
