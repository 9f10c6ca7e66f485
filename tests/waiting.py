"""Waiting for something to happen: poll a condition until a deadline."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

POLL_INTERVAL = 0.005


def wait_for(
    condition: Callable[[], bool], timeout: float = 10.0, message: str = ""
) -> None:
    """Polls the condition until true; raises AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    interval = POLL_INTERVAL
    while not condition():
        if time.monotonic() >= deadline:
            detail = f": {message}" if message else ""
            msg = f"condition not met within {timeout} seconds{detail}"
            raise AssertionError(msg)
        time.sleep(interval)
        # Back off a little, so a long wait does not steal the CPU from the workers.
        interval = min(interval * 2, 0.05)
