"""Integers from user input: ASCII digits only, bounded, or a clear InvalidRequest.

`str.isdigit()` accepts characters `int()` refuses (superscripts), `float()` accepts `inf`, and
SQLite cannot bind integers beyond 64 bits: every numeric query value and header goes through
here so that none of those turn into a 500.
"""

from __future__ import annotations

import re

from homing.errors import InvalidRequest

_INT = re.compile(r"-?[0-9]{1,18}")
_NUMBER = re.compile(r"-?[0-9]{1,18}(?:\.[0-9]{0,9})?(?:[eE]\+?[0-9]{1,2})?")
MAX_INT = 2**62


def parse_int(text: str, what: str, lo: int = 0, hi: int = MAX_INT) -> int:
    value = text.strip()
    if not _INT.fullmatch(value):
        raise InvalidRequest(f"invalid {what} {text[:40]!r}: expected an integer")
    number = int(value)
    if not lo <= number <= hi:
        raise InvalidRequest(f"{what} must be between {lo} and {hi}, got {number}")
    return number


def parse_ms(text: str, what: str) -> int:
    """A Unix time in milliseconds; decimal or exponent forms are accepted (JS sends them)."""
    value = text.strip()
    if not _NUMBER.fullmatch(value):
        raise InvalidRequest(f"{what} must be a Unix time in milliseconds, got {text[:40]!r}")
    number = int(float(value))
    if not 0 <= number <= MAX_INT:
        raise InvalidRequest(f"{what} is out of range: {text[:40]!r}")
    return number
