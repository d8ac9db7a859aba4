"""Turning library exceptions into short messages."""

from __future__ import annotations


def first_line(exc: BaseException, *, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (TensorFlow's run to pages)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__
