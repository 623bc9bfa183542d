"""Flow-control capacity: parallelism, rate windows and pausing, as `homing.flow_control`
decides them for both storage backends."""

from __future__ import annotations

from homing.flow_control import UNLIMITED, Capacity, RateWindow, capacity, current_window, split

NOW = 1_700_000_000_000
FRESH = RateWindow(0, NOW)


def cap(
    *,
    paused: bool = False,
    parallelism: int | None = None,
    active: int = 0,
    rate: int | None = None,
    period_s: int = 1,
    window: RateWindow = FRESH,
    now_ms: int = NOW,
) -> Capacity:
    return capacity(
        paused=paused,
        parallelism=parallelism,
        active=active,
        rate=rate,
        period_s=period_s,
        window=window,
        now_ms=now_ms,
    )


def test_a_key_without_limits_is_unlimited() -> None:
    assert cap() == Capacity(UNLIMITED, None, RateWindow(0, NOW))


def test_parallelism_leaves_room_for_what_is_not_in_flight() -> None:
    assert cap(parallelism=3, active=1).free == 2
    assert cap(parallelism=3, active=3).free == 0
    assert cap(parallelism=2, active=5).free == 0  # lowered below what runs: never negative


def test_a_rate_allows_what_is_left_of_the_window() -> None:
    c = cap(rate=10, period_s=60, window=RateWindow(7, NOW - 1000))
    assert (c.free, c.blocked_until_ms) == (3, None)


def test_an_exhausted_window_blocks_until_it_ends() -> None:
    c = cap(rate=10, period_s=60, window=RateWindow(10, NOW - 1000))
    assert c == Capacity(0, NOW - 1000 + 60_000, RateWindow(10, NOW - 1000))


def test_a_window_whose_period_passed_starts_over_from_now() -> None:
    old = RateWindow(10, NOW - 60_000)
    c = cap(rate=10, period_s=60, window=old)
    assert c == Capacity(10, None, RateWindow(0, NOW))
    assert current_window(old, 60, NOW - 1) == old  # one millisecond earlier it still counts


def test_the_tighter_limit_wins() -> None:
    assert cap(parallelism=5, active=1, rate=2).free == 2
    assert cap(parallelism=2, active=1, rate=5).free == 1


def test_a_paused_key_starts_nothing_but_its_window_still_rolls_over() -> None:
    c = cap(paused=True, parallelism=5, rate=5, window=RateWindow(5, NOW - 5000))
    assert c == Capacity(0, None, RateWindow(0, NOW))


def test_split_starts_the_oldest_and_keeps_the_rest_in_order() -> None:
    assert split(["a", "b", "c"], 2) == (["a", "b"], ["c"])
    assert split(["a", "b"], 0) == ([], ["a", "b"])
    assert split(["a"], UNLIMITED) == (["a"], [])
