"""A ``.tflite`` artifact in TensorFlow Lite Micro: does every op resolve, how large must the tensor
arena be, and does it compute what LiteRT computes?

The interpreter runs in a child process (:mod:`.tflm_child`): tiny arenas crash it. The arena
is measured, not estimated: one run in a generous arena gives the interpreter's own total
(RecordingMicroAllocator), which can undercount (temporaries of Prepare are not recorded), so
the smallest arena that allocates and invokes is then found by bisection, to TFLM's 16-byte
alignment. A child that crashes on a probe counts it as failing and is started afresh.

Outputs are compared, value by value, with LiteRT's reference kernels (``BUILTIN_REF``): TFLM's
kernels are ports of them and round alike. LiteRT's optimized kernels, with or without XNNPACK,
round some ops differently (hard-swish, mean): a MobileNetV3 differed by 3 int8 steps on a third
of its outputs against them, by 1 step on 2 of 2,000 against the reference kernels.
"""

from __future__ import annotations

import json
import os
import platform
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from edgekit._optional import require
from edgekit.converters.formats import ArtifactIO
from edgekit.converters.target_report import TflmFigures
from edgekit.converters.tflm_child import MARK
from edgekit.errors import ConversionError
from edgekit.runtime import litert_interpreter, litert_op_resolver, to_model_dtype

# Added to the measured arena for the RAM figure: the board's optimized kernels (CMSIS-NN) ask
# for scratch buffers the reference kernels measured here do not, and struct sizes and
# alignment differ between this 64-bit host and a 32-bit core.
ARENA_MARGIN = 0.20
GRAIN = 16  # TFLM aligns arena allocations to 16 bytes
COMPARED_WITH = "LiteRT's reference kernels (BUILTIN_REF)"
# LiteRT's reference resolver lacks some kernels TFLM has (ELU): those models are compared with
# its optimized built-in kernels, and the report says which.
COMPARED_WITH_BUILTIN = "LiteRT's built-in kernels (no XNNPACK; its reference kernels lack an op)"
_SMALLEST_PROBE = 256  # below this TFLM crashes rather than fails; nothing real fits anyway
_MISSING = (
    re.compile(r"Didn't find op for builtin opcode '([^']+)'"),
    re.compile(r"Failed to get registration from op code (\S+)"),
)
_PROBE_SECONDS = 120.0
_RUN_SECONDS = 900.0


@dataclass(frozen=True)
class _Reply:
    ok: bool
    recorded: int | None
    error: str
    log: str


def tflm_version() -> str:
    """The installed TensorFlow Lite Micro's version (a dev build and its git hash)."""
    module = require("tflite_micro", extra="mcu", package="tflite-micro")
    return str(getattr(module, "__version__", "unknown"))


def run_tflm(
    content: bytes, io: ArtifactIO, xs: Sequence[np.ndarray], *, file_name: str
) -> TflmFigures:
    """``content`` in TFLM on the inputs ``xs`` (float, batch first): ops, arena and outputs."""
    version = tflm_version()
    feeds = [to_model_dtype(np.asarray(x), spec) for x, spec in zip(xs, io.inputs, strict=True)]
    samples = int(feeds[0].shape[0])
    big = max(16 * 2**20, 4 * len(content))
    with tempfile.TemporaryDirectory(prefix="edgekit-tflm-") as tmp:
        work = Path(tmp)
        (work / "model.tflite").write_bytes(content)
        named: dict[str, Any] = {f"x{i}": f for i, f in enumerate(feeds)}
        np.savez(work / "inputs.npz", **named)
        with _Child(work, outputs=len(io.outputs)) as child:
            first = child.ask(big, samples=samples, out=work / "out.npz", timeout=_RUN_SECONDS)
            if not first.ok:
                return _refused(first, version, file_name=file_name, big=big, samples=samples)
            with np.load(work / "out.npz") as saved:
                tflm = [saved[f"y{k}"] for k in range(len(io.outputs))]
            arena, probes = _smallest_arena(child, first.recorded, big=big, file_name=file_name)
    reference, compared_with = _litert_outputs(content, feeds, len(io.outputs))
    diffs = [_diff(t, r) for t, r in zip(tflm, reference, strict=True)]
    return TflmFigures(
        version=version,
        host=platform.machine(),
        missing_ops=(),
        recorded_arena_bytes=first.recorded,
        arena_bytes=arena,
        probes=probes + 1,
        margin=ARENA_MARGIN,
        ram_bytes=_up(int(np.ceil(arena * (1 + ARENA_MARGIN)))),
        samples=samples,
        compared_with=compared_with,
        max_diff=max(d[0] for d in diffs),
        diff_unit="steps" if np.issubdtype(tflm[0].dtype, np.integer) else "float",
        differing=sum(d[1] for d in diffs),
        values=sum(int(t.size) for t in tflm),
    )


def _refused(reply: _Reply, version: str, *, file_name: str, big: int, samples: int) -> TflmFigures:
    """The figures of a model TFLM cannot load for want of ops; any other failure is an error."""
    missing = tuple(dict.fromkeys(m for p in _MISSING for m in p.findall(reply.log)))
    if not missing:
        said = next((ln for ln in reply.log.splitlines() if ln.strip()), reply.error)
        raise ConversionError(
            f"TensorFlow Lite Micro {version} could not allocate {file_name} even in a "
            f"{big / 2**20:.0f} MiB arena: {said.strip()}"
        )
    return TflmFigures(
        version=version, host=platform.machine(), missing_ops=missing, recorded_arena_bytes=None,
        arena_bytes=None, probes=1, margin=ARENA_MARGIN, ram_bytes=None, samples=samples,
        compared_with=COMPARED_WITH, max_diff=None, diff_unit="steps", differing=0, values=0,
    )  # fmt: skip


def _smallest_arena(
    child: _Child, recorded: int | None, *, big: int, file_name: str
) -> tuple[int, int]:
    """The smallest arena (a multiple of 16 bytes) that allocates and invokes, and the probes
    it took; starting from the interpreter's own figure, which is usually right or close."""
    probes = 0

    def works(size: int) -> bool:
        nonlocal probes
        probes += 1
        return child.ask(size, samples=1, timeout=_PROBE_SECONDS).ok

    hi = _up(recorded or GRAIN)
    while not works(hi):  # the recorded total undercounts: grow until it fits
        hi = _up(int(hi * 1.25) + GRAIN)
        if hi >= big:
            raise ConversionError(
                f"{file_name}: TensorFlow Lite Micro allocated it in a {big} byte arena but in "
                "no smaller one tried; its arena could not be measured"
            )
    lo = hi // 2 // GRAIN * GRAIN
    while lo >= _SMALLEST_PROBE and works(lo):  # the figure overcounts: halve until it fails
        hi, lo = lo, lo // 2 // GRAIN * GRAIN
    while hi - lo > GRAIN:  # lo fails (or is too small to try), hi works
        mid = (lo + hi) // 2 // GRAIN * GRAIN
        if mid <= lo:
            break
        if works(mid):
            hi = mid
        else:
            lo = mid
    return hi, probes


def _up(size: int) -> int:
    return -(-size // GRAIN) * GRAIN


def _litert_outputs(
    content: bytes, feeds: Sequence[np.ndarray], outputs: int
) -> tuple[list[np.ndarray], str]:
    """Every output of LiteRT's reference kernels (no delegate), one sample at a time, and what
    ran them: the optimized built-in kernels where the reference resolver lacks an op."""
    try:
        interpreter = litert_interpreter()(
            model_content=content,
            num_threads=1,
            experimental_op_resolver_type=litert_op_resolver("BUILTIN_REF"),
        )
        compared_with = COMPARED_WITH
    except ValueError as exc:  # "Didn't find op for builtin opcode ..."
        if "Didn't find op" not in str(exc):
            raise
        interpreter = litert_interpreter()(
            model_content=content,
            num_threads=1,
            experimental_op_resolver_type=litert_op_resolver("BUILTIN_WITHOUT_DEFAULT_DELEGATES"),
        )
        compared_with = COMPARED_WITH_BUILTIN
    interpreter.allocate_tensors()
    ins, outs = interpreter.get_input_details(), interpreter.get_output_details()
    ys: list[list[np.ndarray]] = [[] for _ in range(outputs)]
    for n in range(int(feeds[0].shape[0])):
        for detail, feed in zip(ins, feeds, strict=True):
            interpreter.set_tensor(detail["index"], feed[n : n + 1])
        interpreter.invoke()
        for k in range(outputs):
            ys[k].append(np.array(interpreter.get_tensor(outs[k]["index"]))[0])
    return [np.stack(y) for y in ys], compared_with


def _diff(tflm: np.ndarray, litert: np.ndarray) -> tuple[float, int]:
    """Largest absolute difference (in steps for integer outputs) and how many values differ."""
    if np.issubdtype(tflm.dtype, np.integer):
        delta = np.abs(tflm.astype(np.int64) - litert.astype(np.int64))
    else:
        delta = np.abs(tflm.astype(np.float64) - litert.astype(np.float64))
    return float(delta.max(initial=0)), int(np.count_nonzero(delta))


class _Child:
    """The probing child process: restarted when a probe crashes it."""

    def __init__(self, work: Path, *, outputs: int) -> None:
        files = [str(work / "model.tflite"), str(work / "inputs.npz")]
        self._argv = [sys.executable, "-m", "edgekit.converters.tflm_child", *files, str(outputs)]
        self._proc: subprocess.Popen[str] | None = None
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def __enter__(self) -> _Child:
        return self

    def __exit__(self, *_: object) -> None:
        self._stop()

    def ask(self, arena: int, *, samples: int, out: Path | None = None, timeout: float) -> _Reply:
        """Allocate in ``arena`` bytes and run ``samples`` inputs (saving outputs to ``out``)."""
        proc = self._proc or self._start()
        request = {"arena": arena, "samples": samples, "out": None if out is None else str(out)}
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            reply = self._replies.get(timeout=timeout)
        except BrokenPipeError:
            reply = None
        except queue.Empty:
            self._stop()
            raise ConversionError(
                f"TensorFlow Lite Micro took more than {timeout:.0f} s on one request "
                f"(arena {arena} bytes, {samples} samples)"
            ) from None
        if reply is None:  # it died: a crash on this arena size is a failure to allocate
            code = proc.wait()
            self._proc = None
            return _Reply(False, None, f"the interpreter crashed ({_signal_name(code)})", "")
        return _Reply(bool(reply["ok"]), reply["recorded"], reply["error"], reply["log"])

    def _start(self) -> subprocess.Popen[str]:
        # The child's own stderr (Python's, outside requests) is not needed: requests capture
        # TFLM's messages themselves.
        proc = subprocess.Popen(
            self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self._replies = queue.Queue()
        assert proc.stdout is not None
        threading.Thread(target=_read, args=(proc.stdout, self._replies), daemon=True).start()
        self._proc = proc
        return proc

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read(stream: IO[str], replies: queue.Queue[dict[str, Any] | None]) -> None:
    """Replies from the child's stdout into ``replies``; None when it closes."""
    for line in stream:
        if line.startswith(MARK):
            replies.put(json.loads(line[len(MARK) :]))
    replies.put(None)


def _signal_name(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"
