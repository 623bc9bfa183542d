"""Cron schedules: syntax, UTC and zoned fire times, daylight saving, and the missed-tick policy."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from homing.cron import CronSchedule, due_tick
from homing.errors import InvalidRequest

MINUTE = 60_000
HOUR = 60 * MINUTE


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """Unix ms of a UTC wall-clock time."""
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()) * 1000


def cron(text: str) -> CronSchedule:
    return CronSchedule.parse(text, now_ms=utc(2026, 1, 1))


# --- parsing -----------------------------------------------------------------------------------


def test_a_five_field_expression_runs_in_utc_without_seconds() -> None:
    schedule = cron("*/10 * * * *")
    assert (schedule.text, schedule.zone, schedule.has_seconds) == ("*/10 * * * *", "UTC", False)


def test_surrounding_whitespace_is_trimmed_from_the_stored_text() -> None:
    assert cron("  */10 * * * * \n").text == "*/10 * * * *"


def test_a_six_field_expression_has_a_leading_seconds_field() -> None:
    schedule = cron("*/5 * * * * *")
    assert schedule.has_seconds
    start = utc(2026, 5, 1, 12, 0, 0)
    assert schedule.preview(start, 4) == [
        start + 5000,
        start + 10_000,
        start + 15_000,
        start + 20_000,
    ]


def test_cron_tz_prefix_selects_the_zone_and_stays_in_the_text() -> None:
    schedule = cron(" CRON_TZ=Europe/London 0 9 * * * ")
    assert schedule.text == "CRON_TZ=Europe/London 0 9 * * *"
    assert schedule.zone == "Europe/London"


def test_tz_prefix_is_accepted_too() -> None:
    assert cron("TZ=Asia/Tokyo 0 9 * * *").zone == "Asia/Tokyo"


def test_month_and_weekday_names_are_accepted() -> None:
    schedule = cron("0 9 * JAN,JUL MON-FRI")
    # 2026-01-02 is a Friday, 2026-01-05 the next Monday.
    assert schedule.preview(utc(2026, 1, 1, 12), 2) == [utc(2026, 1, 2, 9), utc(2026, 1, 5, 9)]


def test_ranges_with_steps_are_accepted() -> None:
    schedule = cron("0 8-18/5 * * *")
    assert schedule.preview(utc(2026, 1, 1), 4) == [
        utc(2026, 1, 1, 8),
        utc(2026, 1, 1, 13),
        utc(2026, 1, 1, 18),
        utc(2026, 1, 2, 8),
    ]


def test_common_macros_are_accepted() -> None:
    assert cron("@hourly").next_after(utc(2026, 1, 1, 10, 5)) == utc(2026, 1, 1, 11)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("* * * *", "got 4"),
        ("* * * * * * *", "got 7"),
        ("61 * * * *", "invalid cron expression '61 * * * *'"),
        ("*/0 * * * *", "step"),
        ("* * * FOO *", "unsupported field 'FOO'"),
        ("H * * * *", "unsupported field 'H'"),
        ("R * * * *", "unsupported field 'R'"),
        ("@reboot", "unsupported macro '@reboot'"),
        ("0 0 30 2 *", "never fires"),
        ("CRON_TZ=Mars/Base 0 9 * * *", "unknown time zone 'Mars/Base'"),
        ("CRON_TZ=../etc/passwd 0 9 * * *", "unknown time zone"),
        ("CRON_TZ=Europe/London", "must be followed by the cron fields"),
    ],
)
def test_invalid_expressions_are_rejected_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        cron(text)
    assert problem in caught.value.message


# --- UTC fire times ----------------------------------------------------------------------------


def test_next_after_is_strictly_after_the_given_instant() -> None:
    schedule = cron("*/15 * * * *")
    assert schedule.next_after(utc(2026, 1, 1, 10, 0)) == utc(2026, 1, 1, 10, 15)
    assert schedule.next_after(utc(2026, 1, 1, 10, 0) - 1) == utc(2026, 1, 1, 10, 0)
    assert schedule.next_after(utc(2026, 1, 1, 10, 14, 59) + 999) == utc(2026, 1, 1, 10, 15)


def test_next_after_crosses_month_and_year_ends() -> None:
    assert cron("0 0 1 * *").next_after(utc(2026, 12, 15)) == utc(2027, 1, 1)
    assert cron("0 12 29 2 *").next_after(utc(2026, 3, 1)) == utc(2028, 2, 29, 12)


def test_day_of_month_or_day_of_week_fires_on_either() -> None:
    # 2026-01-01 is a Thursday: the 13th (Tuesday) or any Friday.
    assert cron("0 0 13 * FRI").preview(utc(2026, 1, 1), 3) == [
        utc(2026, 1, 2),
        utc(2026, 1, 9),
        utc(2026, 1, 13),
    ]


def test_fires_between_is_exclusive_of_start_inclusive_of_end_and_limited() -> None:
    schedule = cron("0 * * * *")
    start, end = utc(2026, 1, 1, 10), utc(2026, 1, 1, 13)
    assert schedule.fires_between(start, end, 10) == [
        utc(2026, 1, 1, 11),
        utc(2026, 1, 1, 12),
        utc(2026, 1, 1, 13),
    ]
    assert schedule.fires_between(start, end, 2) == [utc(2026, 1, 1, 11), utc(2026, 1, 1, 12)]
    assert schedule.fires_between(start, end, 0) == []
    assert schedule.fires_between(end, start, 10) == []


def test_preview_lists_the_next_n_fire_times() -> None:
    assert cron("30 9 * * *").preview(utc(2026, 1, 1, 10), 3) == [
        utc(2026, 1, 2, 9, 30),
        utc(2026, 1, 3, 9, 30),
        utc(2026, 1, 4, 9, 30),
    ]
    assert cron("30 9 * * *").preview(utc(2026, 1, 1), 0) == []


def test_a_zone_without_daylight_saving_is_a_fixed_offset() -> None:
    # Asia/Tokyo is UTC+9 all year, including the days other zones change their clocks.
    schedule = cron("CRON_TZ=Asia/Tokyo 30 2 * * *")
    assert schedule.preview(utc(2026, 3, 6), 3) == [
        utc(2026, 3, 6, 17, 30),
        utc(2026, 3, 7, 17, 30),
        utc(2026, 3, 8, 17, 30),
    ]


# --- daylight saving time ----------------------------------------------------------------------
# America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC); 2026-11-01 02:00 EDT -> 01:00 EST
# (06:00 UTC). Europe/London: 2026-03-29 01:00 GMT -> 02:00 BST (01:00 UTC); 2026-10-25 02:00 BST ->
# 01:00 GMT (01:00 UTC).

NY = "America/New_York"
LONDON = "Europe/London"
UTC_ZONE = "UTC"

DST_TABLE = [
    # New York, spring forward: 02:30 does not exist and fires once at 03:00 EDT = 07:00 UTC.
    (NY, "30 2 * * *", utc(2026, 3, 7), [(3, 7, 7, 30), (3, 8, 7, 0), (3, 9, 6, 30)]),
    (NY, "30 1 * * *", utc(2026, 3, 7), [(3, 7, 6, 30), (3, 8, 6, 30), (3, 9, 5, 30)]),
    (NY, "0 * * * *", utc(2026, 3, 8, 5), [(3, 8, 6, 0), (3, 8, 7, 0), (3, 8, 8, 0), (3, 8, 9, 0)]),
    (NY, "*/30 * * * *", utc(2026, 3, 8, 6), [(3, 8, 6, 30), (3, 8, 7, 0), (3, 8, 7, 30)]),
    # New York, fall back: 01:xx repeats; only the first (EDT) pass fires.
    (NY, "30 2 * * *", utc(2026, 10, 31), [(10, 31, 6, 30), (11, 1, 7, 30), (11, 2, 7, 30)]),
    (NY, "30 1 * * *", utc(2026, 10, 31), [(10, 31, 5, 30), (11, 1, 5, 30), (11, 2, 6, 30)]),
    (NY, "0 * * * *", utc(2026, 11, 1, 3), [(11, 1, 4, 0), (11, 1, 5, 0), (11, 1, 7, 0)]),
    (
        NY,
        "*/30 * * * *",
        utc(2026, 11, 1, 4),
        [(11, 1, 4, 30), (11, 1, 5, 0), (11, 1, 5, 30), (11, 1, 7, 0), (11, 1, 7, 30)],
    ),
    # London, spring forward: 01:xx does not exist; 02:30 is an ordinary BST time.
    (LONDON, "30 2 * * *", utc(2026, 3, 28), [(3, 28, 2, 30), (3, 29, 1, 30), (3, 30, 1, 30)]),
    (LONDON, "30 1 * * *", utc(2026, 3, 28), [(3, 28, 1, 30), (3, 29, 1, 0), (3, 30, 0, 30)]),
    (LONDON, "0 * * * *", utc(2026, 3, 28, 23), [(3, 29, 0, 0), (3, 29, 1, 0), (3, 29, 2, 0)]),
    (
        LONDON,
        "*/30 * * * *",
        utc(2026, 3, 28, 23, 30),
        [(3, 29, 0, 0), (3, 29, 0, 30), (3, 29, 1, 0), (3, 29, 1, 30)],
    ),
    # London, fall back: 01:xx repeats; only the first (BST) pass fires.
    (LONDON, "30 2 * * *", utc(2026, 10, 24), [(10, 24, 1, 30), (10, 25, 2, 30), (10, 26, 2, 30)]),
    (LONDON, "30 1 * * *", utc(2026, 10, 24), [(10, 24, 0, 30), (10, 25, 0, 30), (10, 26, 1, 30)]),
    (LONDON, "0 * * * *", utc(2026, 10, 24, 22), [(10, 24, 23, 0), (10, 25, 0, 0), (10, 25, 2, 0)]),
    (
        LONDON,
        "*/30 * * * *",
        utc(2026, 10, 24, 23),
        [(10, 24, 23, 30), (10, 25, 0, 0), (10, 25, 0, 30), (10, 25, 2, 0), (10, 25, 2, 30)],
    ),
    # UTC has no transitions: the same days are plain.
    (UTC_ZONE, "30 2 * * *", utc(2026, 3, 7), [(3, 7, 2, 30), (3, 8, 2, 30), (3, 9, 2, 30)]),
    (UTC_ZONE, "30 1 * * *", utc(2026, 10, 31), [(10, 31, 1, 30), (11, 1, 1, 30), (11, 2, 1, 30)]),
    (UTC_ZONE, "0 * * * *", utc(2026, 11, 1, 0), [(11, 1, 1, 0), (11, 1, 2, 0), (11, 1, 3, 0)]),
    (UTC_ZONE, "*/30 * * * *", utc(2026, 3, 8, 1), [(3, 8, 1, 30), (3, 8, 2, 0), (3, 8, 2, 30)]),
]


@pytest.mark.parametrize(("zone", "fields", "after", "expected"), DST_TABLE)
def test_fire_times_around_daylight_saving_transitions(
    zone: str, fields: str, after: int, expected: list[tuple[int, int, int, int]]
) -> None:
    schedule = cron(f"CRON_TZ={zone} {fields}")
    assert schedule.preview(after, len(expected)) == [utc(2026, *when) for when in expected]


def test_the_skipped_hour_fires_exactly_once_even_for_every_second_jobs() -> None:
    schedule = cron(f"CRON_TZ={NY} * * * * * *")
    jump = utc(2026, 3, 8, 7)  # 03:00 EDT; all of 02:00:00-02:59:59 local collapse onto it
    assert schedule.preview(jump - 2000, 4) == [jump - 1000, jump, jump + 1000, jump + 2000]


def test_during_the_second_pass_of_the_repeated_hour_the_next_fire_is_after_it() -> None:
    second_pass = utc(2026, 11, 1, 6, 10)  # 01:10 EST, the repeated 01:10
    assert cron(f"CRON_TZ={NY} */30 * * * *").next_after(second_pass) == utc(2026, 11, 1, 7)
    assert cron(f"CRON_TZ={NY} 30 1 * * *").next_after(second_pass) == utc(2026, 11, 2, 6, 30)
    assert cron(f"CRON_TZ={NY} * * * * * *").next_after(second_pass) == utc(2026, 11, 1, 7)


def test_fires_between_never_repeats_an_instant_across_a_whole_dst_year() -> None:
    fires = cron(f"CRON_TZ={NY} 0 * * * *").fires_between(utc(2026, 1, 1), utc(2027, 1, 1), 10**6)
    assert fires == sorted(set(fires))
    # 365 local days of 24 ticks; in March 02:00 (skipped) and 03:00 local share 07:00 UTC, and in
    # November the second pass of 01:00 is not a new local time, so it adds nothing.
    assert len(fires) == 365 * 24 - 1


# --- missed-tick policy ------------------------------------------------------------------------

EVERY_MINUTE = cron("* * * * *")
CREATED = utc(2026, 1, 1)


def test_nothing_is_due_between_ticks_that_already_fired() -> None:
    last = utc(2026, 1, 1, 10, 0)
    now = last + 30_000
    assert (
        due_tick(EVERY_MINUTE, last_fire_ms=last, created_ms=CREATED, now_ms=now, grace_ms=MINUTE)
        is None
    )


def test_a_tick_just_reached_is_due() -> None:
    last, now = utc(2026, 1, 1, 10, 0), utc(2026, 1, 1, 10, 1)
    tick = due_tick(EVERY_MINUTE, last_fire_ms=last, created_ms=CREATED, now_ms=now, grace_ms=0)
    assert tick == now


def test_one_missed_tick_within_grace_fires_once() -> None:
    last, now = utc(2026, 1, 1, 10, 0), utc(2026, 1, 1, 10, 1, 20)
    tick = due_tick(
        EVERY_MINUTE, last_fire_ms=last, created_ms=CREATED, now_ms=now, grace_ms=MINUTE
    )
    assert tick == utc(2026, 1, 1, 10, 1)
    # Once recorded as fired, the same tick is never due again.
    again = due_tick(
        EVERY_MINUTE, last_fire_ms=tick, created_ms=CREATED, now_ms=now, grace_ms=MINUTE
    )
    assert again is None


def test_many_missed_ticks_fire_only_the_latest() -> None:
    last, now = utc(2026, 1, 1, 10, 0), utc(2026, 1, 1, 10, 7, 10)
    tick = due_tick(EVERY_MINUTE, last_fire_ms=last, created_ms=CREATED, now_ms=now, grace_ms=HOUR)
    assert tick == utc(2026, 1, 1, 10, 7)


def test_a_tick_older_than_grace_does_not_fire() -> None:
    hourly = cron("0 * * * *")
    last, now = utc(2026, 1, 1, 9), utc(2026, 1, 1, 10, 5)
    assert (
        due_tick(hourly, last_fire_ms=last, created_ms=CREATED, now_ms=now, grace_ms=MINUTE) is None
    )
    tick = due_tick(hourly, last_fire_ms=last, created_ms=CREATED, now_ms=now, grace_ms=5 * MINUTE)
    assert tick == utc(2026, 1, 1, 10)


def test_a_tick_at_or_before_the_last_fire_never_fires_again() -> None:
    hourly = cron("0 * * * *")
    now = utc(2026, 1, 1, 10, 0, 30)
    for last in (utc(2026, 1, 1, 10), utc(2026, 1, 1, 10, 0, 10)):
        assert (
            due_tick(hourly, last_fire_ms=last, created_ms=CREATED, now_ms=now, grace_ms=HOUR)
            is None
        )


def test_ticks_before_the_schedule_was_created_never_fire() -> None:
    hourly = cron("0 * * * *")
    created, now = utc(2026, 1, 1, 10, 0, 1), utc(2026, 1, 1, 10, 0, 30)
    assert (
        due_tick(hourly, last_fire_ms=None, created_ms=created, now_ms=now, grace_ms=HOUR) is None
    )
    tick = due_tick(hourly, last_fire_ms=None, created_ms=created - 2000, now_ms=now, grace_ms=HOUR)
    assert tick == utc(2026, 1, 1, 10)


def test_due_tick_during_the_repeated_hour_is_the_first_pass_tick() -> None:
    schedule = cron(f"CRON_TZ={NY} */30 * * * *")
    now = utc(2026, 11, 1, 6, 10)  # 01:10 EST; 01:30 EDT (05:30 UTC) was the last tick
    tick = due_tick(schedule, last_fire_ms=None, created_ms=CREATED, now_ms=now, grace_ms=HOUR)
    assert tick == utc(2026, 11, 1, 5, 30)


def test_due_tick_after_the_skipped_hour_is_the_jump_instant() -> None:
    schedule = cron(f"CRON_TZ={NY} 30 2 * * *")
    now = utc(2026, 3, 8, 7, 0, 5)
    tick = due_tick(schedule, last_fire_ms=None, created_ms=CREATED, now_ms=now, grace_ms=MINUTE)
    assert tick == utc(2026, 3, 8, 7)
