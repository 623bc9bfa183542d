"""Cron expressions for schedules: parsing, next fire times, and the missed-tick policy.

Syntax
    The expression is trimmed of leading/trailing whitespace. An optional prefix
    `CRON_TZ=<IANA zone> ` (or `TZ=<IANA zone> `) selects a time zone; without it the schedule
    runs in UTC. Then come the standard 5 fields `minute hour day-of-month month day-of-week`
    (`*`, lists, ranges, steps, names such as `JAN` and `MON`; when both day fields are
    restricted, a day matching either fires, as in Vixie cron). As a Homing extension a 6th
    field may be put FIRST: seconds, e.g. `*/5 * * * * *` fires every 5 seconds. The macros
    `@yearly @annually @monthly @weekly @daily @midnight @hourly` and croniter's day-field
    extensions (`L`, `15W`, `MON#2`) are accepted; `@reboot`, hashed/random fields (`H`, `R`), a
    year field and anything else are rejected with `400`, as is an expression with no fire time
    in the 5 years after it is parsed (e.g. `0 0 30 2 *`).

Daylight saving time
    Fire times are computed as LOCAL wall-clock times in the schedule's zone, then mapped to
    UTC instants:
    * A local time that does not exist because the clocks jump forward (the skipped hour)
      fires once, at the instant of the jump. `30 2 * * *` in America/New_York fires on
      2026-03-08 at 03:00 local (07:00 UTC).
    * A local time that occurs twice because the clocks go back (the repeated hour) fires
      once, at its first occurrence. `30 1 * * *` in America/New_York fires on 2026-11-01 at
      01:30 EDT (05:30 UTC), not again at 01:30 EST.
    * Interval jobs follow the same two rules and never fire twice at the same instant: all
      local times in the skipped hour, plus the first valid time after it, collapse into ONE
      fire at the instant of the jump (`0 * * * *` in New York on 2026-03-08 fires at 06:00,
      07:00, 08:00 UTC); times in the repeated hour fire only during its first pass, so the
      second pass is silent (`0 * * * *` in New York on 2026-11-01 fires at 05:00 UTC for
      01:00 EDT, then next at 07:00 UTC for 02:00 EST; nothing at 06:00 UTC).
    Zones without daylight saving time, and UTC, are unaffected.

Missed ticks
    `due_tick` returns only the latest missed tick, and only if it is at most `grace_ms` old;
    older missed ticks are skipped, never fired in a burst. Every tick is an exact instant (Unix
    ms), so "one firing per (schedule, tick)" can be enforced by a unique key.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from homing.errors import InvalidRequest

__all__ = ["CronSchedule", "due_tick"]

HORIZON_YEARS = 5
_MAX_STEPS = 1000  # croniter steps without a new fire before giving up (never reached in practice)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)
_PREFIX = re.compile(r"^(?:CRON_TZ|TZ)=(\S*)\s+(.*)$", re.IGNORECASE | re.DOTALL)
_FIELD = re.compile(r"^[0-9A-Za-z*?,/#-]+$")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WORDS = frozenset((*_MONTHS, "sun", "mon", "tue", "wed", "thu", "fri", "sat", "l", "w"))
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _utc(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def _seconds(aware: datetime) -> int:
    return (aware - _EPOCH) // _ONE_SECOND


def _offset(seconds: int, zone: ZoneInfo) -> timedelta | None:
    return _utc(seconds).astimezone(zone).utcoffset()


def _first_change(lo: int, hi: int, zone: ZoneInfo) -> int:
    """The first second in (lo, hi] whose UTC offset differs from lo's (one must exist)."""
    before = _offset(lo, zone)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(mid, zone) == before:
            lo = mid
        else:
            hi = mid
    return hi


def _repeat_end(local: datetime, zone: ZoneInfo) -> datetime | None:
    """For an aware local time in the SECOND pass of a repeated hour, the naive wall-clock time
    at which the repeated hour ends; None for any other time."""
    first = local.replace(fold=0).utcoffset()
    second = local.utcoffset()
    if local.fold != 1 or first is None or second is None or first == second:
        return None
    now = _seconds(local)
    change = _first_change(now - (first - second) // _ONE_SECOND, now, zone)
    return _utc(change).astimezone(zone).replace(tzinfo=None) + (first - second)


def _to_utc(local: datetime, zone: ZoneInfo) -> tuple[int, datetime | None]:
    """Map a naive wall-clock time to its fire instant (Unix seconds). For a time inside a
    skipped hour, also return the naive wall-clock time at which the skipped hour ends."""
    first = _seconds(local.replace(tzinfo=zone, fold=0))
    if _utc(first).astimezone(zone).replace(tzinfo=None) == local:
        return first, None  # exists (first occurrence if repeated)
    second = _seconds(local.replace(tzinfo=zone, fold=1))
    jump = _first_change(min(first, second), max(first, second), zone)
    return jump, _utc(jump).astimezone(zone).replace(tzinfo=None)


@functools.lru_cache(maxsize=1024)
def _template(fields: str, has_seconds: bool) -> croniter:
    """A parsed croniter to copy from (parsing is most of croniter's cost; copies are cheap)."""
    return croniter(
        fields,
        datetime(2000, 1, 1),
        ret_type=datetime,
        second_at_beginning=has_seconds,
        max_years_between_matches=HORIZON_YEARS,
    )


def _invalid(text: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"invalid cron expression '{text}': {problem}")


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed cron expression. Build it with `CronSchedule.parse`."""

    text: str  # trimmed original, including any CRON_TZ= prefix
    zone: str  # IANA zone name, "UTC" by default
    has_seconds: bool  # True for the 6-field form with a leading seconds field
    fields: str  # the expression without the zone prefix, fields separated by single spaces

    @classmethod
    def parse(cls, text: str, *, now_ms: int | None = None) -> CronSchedule:
        """Validate `text`; raise InvalidRequest naming the problem. Given `now_ms` (a new
        expression), it must also fire within 5 years after it."""
        trimmed = text.strip()
        zone, body = "UTC", trimmed
        prefix = _PREFIX.match(trimmed)
        if prefix:
            zone, body = prefix.group(1), prefix.group(2).strip()
            if not zone:
                raise _invalid(trimmed, "empty time zone in CRON_TZ= prefix")
        elif re.match(r"^(?:CRON_)?TZ=", trimmed, re.IGNORECASE):
            raise _invalid(trimmed, "CRON_TZ=<zone> must be followed by the cron fields")
        if not body:
            raise InvalidRequest("invalid cron expression: it is empty")
        if body.startswith("@"):
            if body.lower() not in _MACROS:
                raise _invalid(trimmed, f"unsupported macro '{body}'")
            body = _MACROS[body.lower()]
        parts = body.split()
        if len(parts) not in (5, 6):
            raise _invalid(
                trimmed,
                f"expected 5 fields (minute hour day-of-month month day-of-week), or 6 with a "
                f"leading seconds field; got {len(parts)}",
            )
        for part in parts:
            words = re.findall(r"[a-z]+", part.lower())
            if not _FIELD.match(part) or any(word not in _WORDS for word in words):
                raise _invalid(trimmed, f"unsupported field '{part}'")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidRequest(f"unknown time zone '{zone}'") from None
        schedule = cls(text=trimmed, zone=zone, has_seconds=len(parts) == 6, fields=" ".join(parts))
        try:
            schedule._iterator(datetime(2000, 1, 1))
        except (CroniterError, ValueError, TypeError, KeyError) as exc:
            raise _invalid(trimmed, str(exc) or type(exc).__name__) from None
        # Without `now_ms` the caller re-parses a stored expression, checked when it was stored.
        if now_ms is not None and next(schedule._fires(now_ms), None) is None:
            raise _invalid(trimmed, f"it never fires within the next {HORIZON_YEARS} years")
        return schedule

    def next_after(self, after_ms: int) -> int:
        """The first fire instant (Unix ms) strictly after `after_ms`."""
        fire = next(self._fires(after_ms), None)
        if fire is None:
            raise _invalid(self.text, f"no fire time within {HORIZON_YEARS} years")
        return fire

    def fires_between(self, start_ms: int, end_ms: int, limit: int) -> list[int]:
        """Fire instants in (start_ms, end_ms], ascending, at most `limit` of them."""
        fires: list[int] = []
        if limit <= 0 or end_ms <= start_ms:
            return fires
        for fire in self._fires(start_ms):
            if fire > end_ms:
                break
            fires.append(fire)
            if len(fires) >= limit:
                break
        return fires

    def preview(self, after_ms: int, n: int) -> list[int]:
        """The next `n` fire instants strictly after `after_ms`."""
        return list(islice(self._fires(after_ms), max(n, 0)))

    def latest_at_or_before(self, at_ms: int) -> int | None:
        """The last fire instant at or before `at_ms` (None if none within 5 years before)."""
        zone = ZoneInfo(self.zone)
        local = _utc(at_ms // 1000).astimezone(zone)
        # Wall-clock times in the repeated hour fire on its first pass, so during the second
        # pass every tick before the hour's end is already in the past.
        bound = _repeat_end(local, zone) or local.replace(tzinfo=None) + _ONE_SECOND
        try:
            tick: datetime = self._iterator(bound).get_prev(datetime)
        except CroniterBadDateError:
            return None
        return _to_utc(tick, zone)[0] * 1000

    def _iterator(self, start: datetime) -> croniter:
        """A croniter over naive wall-clock times (no zone: croniter does no DST handling)."""
        it = copy.copy(_template(self.fields, self.has_seconds))
        it.set_current(start, force=True)
        return it

    def _fires(self, after_ms: int) -> Iterator[int]:
        """Fire instants (Unix ms) strictly after `after_ms`, strictly increasing."""
        zone = ZoneInfo(self.zone)
        last = after_ms // 1000  # fires are whole seconds: fire > after_ms <=> fire_s > last
        local = _utc(last).astimezone(zone)
        end = _repeat_end(local, zone)
        it = self._iterator(end - _ONE_SECOND if end else local.replace(tzinfo=None))
        steps = 0
        while steps < _MAX_STEPS:
            steps += 1
            try:
                tick: datetime = it.get_next(datetime)
            except CroniterBadDateError:
                return
            fire, skipped_end = _to_utc(tick, zone)
            if skipped_end is not None:  # in a skipped hour: resume at its end, no duplicates
                it = self._iterator(skipped_end - _ONE_SECOND)
            if fire > last:
                last, steps = fire, 0
                yield fire * 1000


def due_tick(
    schedule: CronSchedule,
    *,
    last_fire_ms: int | None,
    created_ms: int,
    now_ms: int,
    grace_ms: int,
) -> int | None:
    """The one tick to fire now: the latest tick t with max(last_fire_ms, created_ms) < t <=
    now_ms, provided now_ms - t <= grace_ms; otherwise None. Older missed ticks are skipped."""
    floor = created_ms if last_fire_ms is None else max(last_fire_ms, created_ms)
    tick = schedule.latest_at_or_before(now_ms)
    if tick is None or tick <= floor or now_ms - tick > grace_ms:
        return None
    return tick
