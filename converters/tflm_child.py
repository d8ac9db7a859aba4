"""TensorFlow Lite Micro probes in a child process: ``python -m edgekit.converters.tflm_child
MODEL INPUTS``.

TFLM's interpreter crashes the whole process (SIGSEGV) on very small arenas instead of failing,
so the build never runs it in its own process. This child reads one JSON request a line on stdin
(``{"arena": bytes, "samples": n, "out": path or null}``), builds an interpreter with that arena
(it allocates in its constructor), invokes it on the first ``n`` inputs and answers one line on
stdout, after :data:`MARK`: whether it allocated and ran, the interpreter's own arena total and
what TFLM printed. TFLM prints to C-level fd 2, so each request captures fd 2 in a file.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

MARK = "edgekit-tflm:"
# What TFLM prints about its arena (RecordingMicroAllocator, after AllocateTensors).
_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
# Enough of TFLM's messages to name what failed; the rest is per-tensor detail.
_LOG_CHARS = 4000


def main(argv: list[str]) -> int:
    """Serve requests until stdin closes (argv: model file, inputs .npz, output count)."""
    from tflite_micro import runtime

    model = Path(argv[0]).read_bytes()
    with np.load(argv[1]) as saved:
        xs = [saved[f"x{i}"] for i in range(len(saved.files))]
    outputs = int(argv[2])
    for line in sys.stdin:
        request = json.loads(line)
        with _captured_fd2() as log:
            error = _serve(runtime, model, xs, outputs, request)
            text = log.read()
        ok = error is None
        found = _TOTAL.search(text) if ok else None
        recorded = int(found.group(1)) if found else None
        reply = {"ok": ok, "recorded": recorded, "error": error or "", "log": _messages(text)}
        sys.stdout.write(MARK + json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


def _serve(
    runtime: Any, model: bytes, xs: list[np.ndarray], outputs: int, request: dict[str, Any]
) -> str | None:
    """Allocate in an arena of the requested size and run the first ``samples`` inputs; the
    error, or None."""
    try:
        interpreter = runtime.Interpreter.from_bytes(model, arena_size=int(request["arena"]))
        interpreter.print_allocations()
        ys: list[list[np.ndarray]] = [[] for _ in range(outputs)]
        for n in range(int(request["samples"])):
            for i, x in enumerate(xs):
                interpreter.set_input(x[n : n + 1], i)
            interpreter.invoke()
            for k in range(outputs):
                ys[k].append(np.array(interpreter.get_output(k))[0])
    except (RuntimeError, ValueError, IndexError) as exc:  # how TFLM's wrapper reports failures
        return str(exc) or type(exc).__name__
    if request.get("out"):
        named: dict[str, Any] = {f"y{k}": np.stack(y) for k, y in enumerate(ys)}
        np.savez(request["out"], **named)
    return None


def _messages(text: str) -> str:
    """TFLM's log without the per-allocation lines."""
    lines = [ln for ln in text.splitlines() if ln.strip() and "RecordingMicroAllocator" not in ln]
    return "\n".join(lines)[:_LOG_CHARS]


class _Log:
    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def read(self) -> str:
        self._handle.seek(0)
        return bytes(self._handle.read()).decode(errors="replace")


@contextmanager
def _captured_fd2() -> Iterator[_Log]:
    """fd 2 into a temporary file for the block (``sys.stderr`` redirection misses C writes)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as handle:
        os.dup2(handle.fileno(), 2)
        try:
            yield _Log(handle)
        finally:
            os.dup2(saved, 2)
            os.close(saved)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
