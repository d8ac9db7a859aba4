"""The Edge TPU compiler on a full-int8 ``.tflite``: run when ``edgetpu_compiler`` is on PATH.

Coral distributes the compiler only from its own apt repository, so a build machine often has
none. Then the artifact ships uncompiled and the build says so: the Edge TPU runs only compiled
models, and the profile's latency figures assume one. When the compiler is found it is run; its
``*_edgetpu.tflite`` goes into the bundle beside the artifact, with its summary in the report.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path, PurePath

from edgekit.converters.target_report import EdgeTpuFigures
from edgekit.errors import ConversionError

COMPILER = "edgetpu_compiler"
_SECONDS = 600
_VERSION = re.compile(r"Edge TPU Compiler version (\S+)")
_ON_TPU = re.compile(r"operations that will run on Edge TPU:\s*(\d+)")
_ON_CPU = re.compile(r"operations that will run on CPU:\s*(\d+)")


def find_compiler(search_path: str | None = None) -> str | None:
    """The ``edgetpu_compiler`` on ``search_path`` (default: PATH), or None."""
    return shutil.which(COMPILER, path=search_path)


def compiled_name(file_name: str) -> str:
    """The file the compiler writes for ``file_name`` (``model.tflite`` -> ``model_edgetpu...``)."""
    path = PurePath(file_name)
    return f"{path.stem}_edgetpu{path.suffix}"


def run_edgetpu(
    content: bytes, *, file_name: str, compiler: str | None
) -> tuple[EdgeTpuFigures, bytes | None]:
    """The compiler's figures on ``content`` and the compiled model; when ``compiler`` is None,
    the note saying the artifact is not compiled."""
    if compiler is None:
        note = (
            f"{file_name} is not Edge-TPU-compiled ({COMPILER} not found on PATH); the latency "
            f"estimate assumes it is. Run {COMPILER} on it before deploying: uncompiled, the "
            "board runs it on its CPU"
        )
        return EdgeTpuFigures(compiler=None, version=None, compiled=False, tpu_ops=None,
                              cpu_ops=None, log="", note=note), None  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edgekit-edgetpu-") as tmp:
        work = Path(tmp)
        (work / file_name).write_bytes(content)
        argv = [compiler, "--show_operations", "--out_dir", str(work / "out"), file_name]
        try:
            done = subprocess.run(argv, cwd=work, capture_output=True, text=True,
                                  timeout=_SECONDS)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConversionError(f"{COMPILER} ({compiler}) could not run: {exc}") from exc
        out = work / "out" / compiled_name(file_name)
        if done.returncode != 0 or not out.is_file():
            said = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
            raise ConversionError(
                f"{COMPILER} ({compiler}) could not compile {file_name}: "
                f"{said[-1] if said else f'exit {done.returncode}'}"
            )
        compiled = out.read_bytes()
    text = done.stdout
    version, tpu, cpu = (_VERSION.search(text), _ON_TPU.search(text), _ON_CPU.search(text))
    tpu_ops = int(tpu.group(1)) if tpu else None
    cpu_ops = int(cpu.group(1)) if cpu else None
    note = (
        f"{file_name} compiled by {COMPILER}"
        + (f" {version.group(1)}" if version else "")
        + f": {compiled_name(file_name)} in the bundle"
        + (f", {tpu_ops} ops on the Edge TPU and {cpu_ops} on the CPU" if tpu and cpu else "")
    )
    return EdgeTpuFigures(
        compiler=compiler,
        version=version.group(1) if version else None,
        compiled=True,
        tpu_ops=tpu_ops,
        cpu_ops=cpu_ops,
        log="\n".join(ln for ln in text.splitlines() if ln.strip())[:4000],
        note=note,
    ), compiled
