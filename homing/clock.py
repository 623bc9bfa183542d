"""Time, injectable: everything that asks "what time is it" or "wake me at T" goes through a Clock.

Tests pass a `ManualClock` and move time forward instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock time in Unix milliseconds (rounded down)."""

    def now_ms_ceil(self) -> int:
        """The same, rounded up: the first millisecond that is not before now."""

    async def sleep_until(self, when_ms: int, wake: asyncio.Event) -> None:
        """Return at `when_ms`, or earlier as soon as `wake` is set."""


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def now_ms_ceil(self) -> int:
        return -(-time.time_ns() // 1_000_000)

    async def sleep_until(self, when_ms: int, wake: asyncio.Event) -> None:
        # Event-loop timers run on a monotonic clock with millisecond ticks and may fire a
        # little before the wall clock reaches the deadline: wait again for what is left, in
        # nanoseconds, rather than returning early (the message would be "not yet due") or
        # padding the wait (every delayed message would be that much late).
        deadline_ns = when_ms * 1_000_000
        while not wake.is_set():
            rest_s = (deadline_ns - time.time_ns()) / 1e9
            if rest_s <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=rest_s)


class ManualClock:
    """A clock that only moves when told to. `advance()` wakes every sleeper whose time came."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._moved = asyncio.Event()

    def now_ms(self) -> int:
        return self._now

    def now_ms_ceil(self) -> int:
        return self._now

    def set(self, now_ms: int) -> None:
        self._now = now_ms
        self._moved.set()
        self._moved = asyncio.Event()

    def advance(self, ms: int) -> None:
        self.set(self._now + ms)

    async def sleep_until(self, when_ms: int, wake: asyncio.Event) -> None:
        while self._now < when_ms and not wake.is_set():
            moved = self._moved
            waiters = [asyncio.ensure_future(moved.wait()), asyncio.ensure_future(wake.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
