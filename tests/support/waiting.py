"""Polling for something that happens in the background (a delivery, a log entry, a restart)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Call `check` every 20 ms until it returns something truthy, and return that; raise
    AssertionError (with the last value) once `timeout` seconds have passed."""
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(0.02)


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` every `interval` seconds for up to `timeout`; whether it came true (the
    caller asserts, with its own message)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
