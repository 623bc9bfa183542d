"""Flow control's arithmetic: how many deliveries a key may start now, and its rate window.

Pure (no I/O, no clock: the caller passes `now_ms`). Both storage backends read a key's row and
its count of deliveries in flight, ask `capacity`, and write back what it returns; the rules
live here once.

A key limits its messages by parallelism (deliveries in flight at once) and by rate (deliveries
started per window of `period_s` seconds). A window starts when the first delivery after the
previous window's end is considered, not on a fixed grid, so a key idle for a while gets a
full window at once. A paused key starts nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

UNLIMITED = 1 << 30  # "no limit" as a count, so that min() composes the limits
PROMOTE_BATCH = 10_000  # most waiting messages moved back to ready in one statement


@dataclass(frozen=True, slots=True)
class RateWindow:
    count: int  # deliveries started in this window
    start_ms: int

    def ends_ms(self, period_s: int) -> int:
        return self.start_ms + period_s * 1000


@dataclass(frozen=True, slots=True)
class Capacity:
    free: int  # deliveries the key may start now (UNLIMITED when nothing limits it)
    blocked_until_ms: int | None  # when the exhausted rate window ends, else None
    window: RateWindow  # the window current at `now_ms`: storage writes it back


def current_window(window: RateWindow, period_s: int, now_ms: int) -> RateWindow:
    """The stored window while its period lasts, else a new empty one starting now."""
    if now_ms >= window.ends_ms(period_s):
        return RateWindow(0, now_ms)
    return window


def capacity(
    *,
    paused: bool,
    parallelism: int | None,
    active: int,
    rate: int | None,
    period_s: int,
    window: RateWindow,
    now_ms: int,
) -> Capacity:
    """What a key may start at `now_ms`, given its settings, `active` deliveries in flight
    (ignored without a parallelism limit) and its stored rate window."""
    current = current_window(window, period_s, now_ms)
    if paused:
        return Capacity(0, None, current)
    free = UNLIMITED
    if parallelism is not None:
        free = min(free, parallelism - active)
    blocked_until = None
    if rate is not None:
        left = rate - current.count
        if left <= 0:
            blocked_until = current.ends_ms(period_s)
        free = min(free, left)
    return Capacity(max(free, 0), blocked_until, current)


def split(due: Sequence[T], free: int) -> tuple[list[T], list[T]]:
    """(messages to start now, messages for the waitlist) of a key's due messages, oldest
    first: the waitlist keeps their order."""
    return list(due[:free]), list(due[free:])
