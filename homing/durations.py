"""QStash duration strings (spec 1.6): `50s`, `10d`, `1h30m3s`, or a bare number of seconds."""

from __future__ import annotations

import re

from homing.errors import InvalidRequest

_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_GROUP = re.compile(r"(\d+)(ms|us|ns|d|h|m|s)")
_WHOLE = re.compile(r"(?:\d+(?:ms|us|ns|d|h|m|s))+")


def parse_duration_s(text: str, *, what: str = "duration") -> int:
    """Whole seconds in `text`; sub-second units round to the nearest second.

    Raises InvalidRequest naming `what` (e.g. the header) when the syntax is wrong.
    """
    value = text.strip()
    if value.isdigit():
        return int(value)
    if not value or not _WHOLE.fullmatch(value):
        raise InvalidRequest(
            f"invalid {what} {text!r}: expected a duration such as 10s, 5m, 1h30m or 2d"
        )
    total = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _GROUP.findall(value))
    return round(total)
