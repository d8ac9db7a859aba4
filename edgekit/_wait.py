"""Waiting for a condition with a deadline: the one poll loop the demo, tests and benchmarks use."""

from __future__ import annotations

import time
from collections.abc import Callable


def poll_until(
    condition: Callable[[], object], *, timeout_s: float = 30.0, poll_s: float = 0.05
) -> bool:
    """Call ``condition`` every ``poll_s`` until it is true or ``timeout_s`` has passed; whether
    it became true. For callers that go on either way and then say what is missing. Errors
    ``condition`` raises go through."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
    return True


def wait_until(
    condition: Callable[[], object],
    *,
    timeout_s: float = 30.0,
    what: str = "the condition",
    poll_s: float = 0.05,
) -> None:
    """Call ``condition`` every ``poll_s`` until it is true; TimeoutError naming ``what`` once
    ``timeout_s`` has passed. Errors ``condition`` raises go through."""
    if not poll_until(condition, timeout_s=timeout_s, poll_s=poll_s):
        raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
