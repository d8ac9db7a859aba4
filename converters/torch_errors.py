"""PyTorch's and litert-torch's exceptions as one line: the reason, the op, the source location.

Their messages run to pages (graphs, tracebacks, links to tlparse); the user needs the first
reason, the op LiteRT has no lowering for, and the line of their ``forward`` that made it.
"""

from __future__ import annotations

import re

from edgekit.converters._errors import first_line

_LOWERING = re.compile(r"Lowering not found: (?:torch\.ops\.)?([A-Za-z0-9_.]+)")
# Tracebacks and torch.export's user-frame notes: File "x.py", line 12, in forward
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\w+)')
# Frames inside these packages are not the user's code.
_LIBRARY = ("site-packages", "dist-packages", "/torch/", "/litert_torch/", "/torchao/")


def user_location(message: str) -> str | None:
    """``file:line in function`` of the last frame outside torch and litert-torch, if any."""
    frames = [m for m in _FRAME.finditer(message) if not any(p in m.group(1) for p in _LIBRARY)]
    if not frames:
        return None
    path, line, function = frames[-1].groups()
    return f"{path}:{line} in {function}"


def reason(exc: BaseException) -> str:
    """One line: the exception's first line (or the op LiteRT lacks) and the user's location."""
    message = str(exc)
    lowering = _LOWERING.search(message)
    text = (
        f"LiteRT has no lowering for op {lowering.group(1)}"
        if lowering
        else f"{type(exc).__name__}: {first_line(exc)}"
    )
    where = user_location(message)
    return f"{text} (at {where})" if where else text
