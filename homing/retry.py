"""When the next attempt of a failed delivery is due: QStash's retry order and its
`Upstash-Retry-Delay` expressions.

After failed attempt k (k = 1 is the first attempt) the delay before retry number k is, in order:

1. the response hint: the first parseable value of `Retry-After`, `X-RateLimit-Reset`,
   `X-RateLimit-Reset-Requests`, `X-RateLimit-Reset-Tokens` (integer seconds, an HTTP date or a
   Go duration such as `6m5s`), honoured only up to 1 day;
2. the `Upstash-Retry-Delay` expression evaluated with `retried = k - 1`, in milliseconds;
3. the default backoff `floor(min(86400, e^(2.5 * k)))` seconds: 12 s, 148 s, 1808 s, 22026 s,
   then 1 day for every later retry. A `scale` factor may shorten it (development mode).

Every delay is clamped to [0, 1 day].

Expressions are user input evaluated on the delivery path, so they are parsed once at publish time
by a small recursive-descent parser (never Python's eval) into a tree, at most 512 characters and
50 levels of nesting deep (which also bounds recursion), and evaluated in saturating
float arithmetic: every intermediate value is kept finite (NaN -> 0, +-inf -> +-1e300), so
evaluation can neither raise nor hang, whatever the publisher wrote. Division by zero follows the
IEEE 754 sign and then saturates: x/0 is the cap for x > 0, and 0 (after clamping) for x <= 0.
`pow(0, negative)` diverges like x/0 (cap); a negative base to a fractional power, and the square
root of a negative number, have no real value and give 0. `round` rounds half away from zero,
like JavaScript's and Go's, not Python's banker's rounding.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from fractions import Fraction
from typing import TypeAlias

from homing.errors import InvalidRequest
from homing.models import Headers

MAX_DELAY_MS = 86_400_000
MAX_EXPRESSION_LENGTH = 512
MAX_NESTING = 50
HINT_HEADERS = (
    "Retry-After",
    "X-RateLimit-Reset",
    "X-RateLimit-Reset-Requests",
    "X-RateLimit-Reset-Tokens",
)

# Far above the cap, so saturation never changes a result that matters, yet far enough below the
# float maximum that one addition of two saturated values cannot overflow.
_BIG = 1e300


def _sat(x: float) -> float:
    if x != x:  # NaN
        return 0.0
    return max(-_BIG, min(_BIG, x))


def _clamp_ms(x: float) -> int:
    return int(max(0.0, min(float(MAX_DELAY_MS), _sat(x))))


def _div(a: float, b: float) -> float:
    if b == 0:
        return math.copysign(_BIG, a) if a != 0 else 0.0
    return a / b


def _pow(x: float, y: float) -> float:
    try:
        return math.pow(x, y)
    except OverflowError:
        odd = y.is_integer() and abs(y) < 2**53 and int(y) % 2 == 1
        return -_BIG if x < 0 and odd else _BIG
    except ValueError:
        return _BIG if x == 0 else 0.0


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return _BIG


def _round(x: float) -> float:
    a = abs(x)
    r = float(math.floor(a))
    if a - r >= 0.5:
        r += 1.0
    return math.copysign(r, x)


_FUNCTIONS: dict[str, tuple[int, Callable[..., float]]] = {
    "pow": (2, _pow),
    "sqrt": (1, lambda x: math.sqrt(x) if x > 0 else 0.0),
    "abs": (1, abs),
    "exp": (1, _exp),
    "floor": (1, lambda x: float(math.floor(x))),
    "ceil": (1, lambda x: float(math.ceil(x))),
    "round": (1, _round),
    "min": (2, min),
    "max": (2, max),
}
_OPERATORS: dict[str, Callable[..., float]] = {"+": operator.add, "-": operator.sub}
_OPERATORS |= {"*": operator.mul, "/": _div}


@dataclass(frozen=True, slots=True)
class _Num:
    value: float


@dataclass(frozen=True, slots=True)
class _Var:
    pass


@dataclass(frozen=True, slots=True)
class _Apply:
    """An operator or function call; `name` is kept for error messages and debugging."""

    name: str
    fn: Callable[..., float]
    args: tuple[_Node, ...]


_Node: TypeAlias = "_Num | _Var | _Apply"


def _eval(node: _Node, retried: float) -> float:
    if isinstance(node, _Num):
        return node.value
    if isinstance(node, _Var):
        return retried
    return _sat(node.fn(*(_eval(arg, retried) for arg in node.args)))


_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[-+*/(),])|(?P<bad>\S))"
)
_Token: TypeAlias = tuple[str, str, int]  # kind ("num", "name", "op", "end"), text, position


def _error(problem: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid retry delay expression: {problem}")


def _tokenize(text: str) -> list[_Token]:
    # `bad` matches any other non-space character, so finditer never skips text silently.
    tokens: list[_Token] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "bad"
        if kind == "bad":
            raise _error(f"unexpected character {match[kind]!r} at position {match.start(kind)}")
        tokens.append((kind, match[kind], match.start(kind)))
    return [*tokens, ("end", "", len(text))]


class _Parser:
    """expression := term (("+" | "-") term)*       term := unary (("*" | "/") unary)*
    unary := "-" unary | primary    primary := number | "retried" | name "(" args ")" | "(" expr ")"
    """

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    def peek(self) -> str:
        kind, text, _ = self.tokens[self.i]
        return text if kind == "op" else ""

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, wanted: str) -> None:
        kind, text, pos = self.take()
        if kind != "op" or text != wanted:
            found = "end of expression" if kind == "end" else repr(text)
            raise _error(f"expected {wanted!r} at position {pos}, found {found}")

    def enter(self, pos: int) -> None:
        # Bounds recursion (here and in _eval) far below Python's stack limit.
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise _error(f"nested more than {MAX_NESTING} levels deep at position {pos}")

    def parse(self) -> _Node:
        node = self.expression()
        kind, text, pos = self.take()
        if kind != "end":
            raise _error(f"unexpected {text!r} at position {pos}")
        return node

    def expression(self) -> _Node:
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            node = _Apply(op, _OPERATORS[op], (node, self.term()))
        return node

    def term(self) -> _Node:
        node = self.unary()
        while self.peek() in ("*", "/"):
            op = self.take()[1]
            node = _Apply(op, _OPERATORS[op], (node, self.unary()))
        return node

    def unary(self) -> _Node:
        if self.peek() != "-":
            return self.primary()
        self.enter(self.take()[2])
        node = _Apply("neg", operator.neg, (self.unary(),))
        self.depth -= 1
        return node

    def primary(self) -> _Node:
        kind, text, pos = self.take()
        if kind == "num":
            return _Num(_sat(float(text)))
        if kind == "name":
            return self.name(text, pos)
        if text == "(":
            self.enter(pos)
            node = self.expression()
            self.expect(")")
            self.depth -= 1
            return node
        found = "end of expression" if kind == "end" else repr(text)
        raise _error(f"expected a value at position {pos}, found {found}")

    def name(self, name: str, pos: int) -> _Node:
        if name == "retried":
            return _Var()
        if name not in _FUNCTIONS:
            what = "function" if self.peek() == "(" else "identifier"
            raise _error(f"unknown {what} {name!r} at position {pos}")
        arity = _FUNCTIONS[name][0]
        if self.peek() != "(":
            raise _error(f"function {name!r} at position {pos} needs {arity} argument(s) in ()")
        self.enter(self.take()[2])
        args = [self.expression()]
        while self.peek() == ",":
            self.take()
            args.append(self.expression())
        self.expect(")")
        self.depth -= 1
        if len(args) != arity:
            raise _error(f"{name}() takes {arity} argument(s), got {len(args)} at position {pos}")
        return _Apply(name, _FUNCTIONS[name][1], tuple(args))


@dataclass(frozen=True, slots=True)
class RetryDelay:
    """A validated `Upstash-Retry-Delay` expression; build it with `RetryDelay.parse`.

    `text` is the original, kept verbatim because it is echoed as `retryDelayExpression`.
    """

    text: str
    _root: _Node = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> RetryDelay:
        if len(text) > MAX_EXPRESSION_LENGTH:
            raise _error(f"longer than {MAX_EXPRESSION_LENGTH} characters")
        if not text.strip():
            raise _error("empty")
        return cls(text, _Parser(_tokenize(text)).parse())

    def evaluate(self, retried: int) -> int:
        """The delay in milliseconds, in [0, MAX_DELAY_MS]; never raises."""
        return _clamp_ms(_eval(self._root, float(max(-_BIG, min(_BIG, retried)))))


def default_backoff_ms(retry_number: int) -> int:
    """QStash's default delay before retry `retry_number` (1-based; lower numbers count as 1)."""
    k = max(1, retry_number)
    if k >= 5:  # e^12.5 > 86400 already; avoids float overflow for huge k
        return MAX_DELAY_MS
    return min(86_400, math.floor(math.exp(2.5 * k))) * 1000


_INTEGER = re.compile(r"[0-9]+")
# One way only to split digits between the parts of a number (`[0-9]+(\.[0-9]*)?`, not
# `[0-9]+\.?[0-9]*`): the ambiguous form backtracks exponentially on a hostile hint such as
# `11s11s...11sx`, and this regex runs on the event loop for every failed attempt.
_GO_ITEM = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)"  # micro sign and Greek mu
_GO_DURATION = re.compile(rf"(?:{_GO_ITEM})+")
_NS_PER_UNIT = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9}
_NS_PER_UNIT |= {"m": 60 * 10**9, "h": 3600 * 10**9}


def _hint_value_ms(value: str, now_ms: int) -> int | None:
    value = value.strip()
    if not value or len(value) > 100:  # no real hint is longer; keeps parsing cheap
        return None
    if _INTEGER.fullmatch(value):
        return int(value) * 1000
    if _GO_DURATION.fullmatch(value):
        ns = sum(
            (Fraction(n) * _NS_PER_UNIT[unit] for n, unit in re.findall(_GO_ITEM, value)),
            Fraction(0),
        )
        # Rounded up: the destination asked not to be called before that instant.
        return math.ceil(ns / 1_000_000)
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000" means UTC with no further information (RFC 5322)
            when = when.replace(tzinfo=UTC)
        return max(0, math.ceil(when.timestamp() * 1000) - now_ms)
    except Exception:  # email.utils raises assorted types on malformed dates across versions
        return None


def retry_hint_ms(headers: Headers, now_ms: int) -> int | None:
    """The delay a failed response asked for (`Retry-After` and the like: checked first), or
    None to fall back.

    The first parseable value wins, in the order of HINT_HEADERS; if it exceeds 1 day it is
    ignored as a whole (not replaced by a later header): the destination said "not that soon".
    """
    by_name: dict[str, list[str]] = {}
    for name, values in headers.items():
        by_name.setdefault(name.lower(), []).extend(values)
    for name in HINT_HEADERS:
        for value in by_name.get(name.lower(), []):
            delay = _hint_value_ms(value, now_ms)
            if delay is not None:
                return delay if delay <= MAX_DELAY_MS else None
    return None


def next_retry_delay_ms(
    *,
    retry_number: int,
    retry_delay: RetryDelay | None,
    response_headers: Headers,
    now_ms: int,
    scale: float = 1.0,
) -> int:
    """The delay before retry `retry_number` (1 = first retry), in QStash's order: the
    response's hint, then the message's expression, then the default backoff.

    `scale` multiplies the default backoff only (e.g. 0.001 in development turns 12 s into 12 ms);
    a response hint or an explicit expression is what someone asked for and is never scaled.
    """
    hint = retry_hint_ms(response_headers, now_ms)
    if hint is not None:
        return hint
    if retry_delay is not None:
        return retry_delay.evaluate(retry_number - 1)
    return _clamp_ms(default_backoff_ms(retry_number) * scale)
