"""QStash duration strings: `50s`, `10d`, `1h30m3s`, or a bare number of seconds."""

from __future__ import annotations

import re
from fractions import Fraction

from homing.errors import InvalidRequest

_UNIT_NS = {"d": 86400 * 10**9, "h": 3600 * 10**9, "m": 60 * 10**9, "s": 10**9}
_UNIT_NS |= {"ms": 10**6, "us": 10**3, "ns": 1}
# ASCII digits only: `\d` and str.isdigit() also match other scripts' digits and
# superscripts such as "²", which int() then refuses (a 500 instead of a 400).
_GROUP = re.compile(r"([0-9]+)(ms|us|ns|d|h|m|s)")
_WHOLE = re.compile(r"(?:[0-9]+(?:ms|us|ns|d|h|m|s))+")
# Like Go's time.Duration (what QStash parses with): at most 2^63 - 1 ns, about 292 years.
# Anything longer is refused rather than passed on as a number that overflows a float, a
# 64-bit JSON integer or a database column further down.
MAX_DURATION_NS = 2**63 - 1
_MAX_CHARS = 100


def parse_duration_s(text: str, *, what: str = "duration") -> int:
    """Whole seconds in `text`; sub-second units round to the nearest second.

    Raises InvalidRequest naming `what` (e.g. the header) when the syntax is wrong or the
    duration is longer than Go's maximum (about 292 years).
    """
    value = text.strip()
    if not value or len(value) > _MAX_CHARS or not value.isascii():
        raise _invalid(text, what)
    if value.isdigit():
        total_ns = int(value) * 10**9
    elif _WHOLE.fullmatch(value):
        total_ns = sum(int(n) * _UNIT_NS[unit] for n, unit in _GROUP.findall(value))
    else:
        raise _invalid(text, what)
    if total_ns > MAX_DURATION_NS:
        raise InvalidRequest(f"invalid {what} {text!r}: longer than the maximum of about 292 years")
    return round(Fraction(total_ns, 10**9))


def _invalid(text: str, what: str) -> InvalidRequest:
    shown = text if len(text) <= _MAX_CHARS else text[:_MAX_CHARS] + "..."
    return InvalidRequest(
        f"invalid {what} {shown!r}: expected a duration such as 10s, 5m, 1h30m or 2d"
    )
