"""Waiting for a condition in tests: poll, never sleep-and-assert (this machine is shared and noisy)."""

from __future__ import annotations

import time


def wait_for(test, timeout: float = 40.0) -> bool:
    """Whether ``test()`` comes true within ``timeout`` seconds (asked once more at the end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if test():
            return True
        time.sleep(0.05)
    return test()
