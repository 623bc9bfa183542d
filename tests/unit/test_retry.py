"""Retry timing (spec 9.3, 9.4): expressions, default backoff, response hints and their order."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from homing.errors import InvalidRequest
from homing.retry import (
    MAX_DELAY_MS,
    RetryDelay,
    default_backoff_ms,
    next_retry_delay_ms,
    retry_hint_ms,
)

DAY_MS = 86_400_000
NOW_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z, a whole second


def delays(text: str, retries: range = range(4)) -> list[int]:
    expression = RetryDelay.parse(text)
    return [expression.evaluate(retried) for retried in retries]


def value(text: str, retried: int = 0) -> int:
    return RetryDelay.parse(text).evaluate(retried)


# --- expressions: the examples of spec 9.4 ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1000", [1000, 1000, 1000, 1000]),
        ("1000 * (1 + retried)", [1000, 2000, 3000, 4000]),
        ("pow(2, retried) * 1000", [1000, 2000, 4000, 8000]),
        ("max(1000, pow(2, retried) * 100)", [1000, 1000, 1000, 1000]),
        ("5000 * retried", [0, 5000, 10000, 15000]),
        ("7000 * retried", [0, 7000, 14000, 21000]),
        ("pow(retried, 2) * 1000", [0, 1000, 4000, 9000]),
    ],
)
def test_spec_examples(text: str, expected: list[int]) -> None:
    assert delays(text) == expected


def test_max_example_grows_past_its_floor() -> None:
    assert delays("max(1000, pow(2, retried) * 100)", range(3, 7)) == [1000, 1600, 3200, 6400]


def test_text_is_kept_verbatim() -> None:
    text = "  pow(2,retried)*1000 "
    assert RetryDelay.parse(text).text == text


def test_expressions_compare_by_text() -> None:
    assert RetryDelay.parse("1000") == RetryDelay.parse("1000")
    assert RetryDelay.parse("1000") != RetryDelay.parse("1000 ")


# --- expressions: every function --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pow(3, 4)", 81),
        ("sqrt(144)", 12),
        ("abs(0 - 250)", 250),
        ("exp(0) * 1000", 1000),
        ("floor(2.9) * 1000", 2000),
        ("ceil(2.1) * 1000", 3000),
        ("round(2.4) * 1000", 2000),
        ("round(2.5) * 1000", 3000),  # half away from zero, not banker's rounding
        ("round(3.5) * 1000", 4000),
        ("abs(round(-2.5)) * 1000", 3000),
        ("min(5, 7)", 5),
        ("max(5, 7)", 7),
        ("min(retried, 9)", 0),
    ],
)
def test_functions(text: str, expected: int) -> None:
    assert value(text) == expected


# --- expressions: syntax ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),  # left-associative
        ("100 / 10 / 5", 2),
        ("2 * 3 + 4 * 5", 26),
        ("100 - 6 / 3", 98),
    ],
)
def test_precedence_and_associativity(text: str, expected: int) -> None:
    assert value(text) == expected


def test_unary_minus() -> None:
    assert value("-1000 + 3000") == 2000
    assert value("--1000") == 1000
    assert value("5000 - -1000") == 6000
    assert value("-(1000 - 3000)") == 2000
    assert value("2000 * -retried", 1) == 0  # negative results clamp to 0
    assert value("-pow(2, 3) * -1000") == 8000


def test_decimals() -> None:
    assert value("1.5 * 1000") == 1500
    assert value(".25 * 1000") == 250
    assert value("2. * 1000") == 2000
    assert value("1.5e3") == 1500
    assert value("1000.9") == 1000  # truncated to whole milliseconds


def test_whitespace_is_ignored() -> None:
    assert value(" \t pow ( 2 ,\n retried ) *1000 ", 3) == 8000
    assert value("pow(2,retried)*1000", 3) == 8000


def test_retried_is_used_as_given() -> None:
    assert value("retried", 7) == 7
    assert value("retried * 1000", 10**100) == DAY_MS
    assert value("retried", -5) == 0


# --- expressions: rejection -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("1000 +", "end of expression"),
        ("(1000", "expected ')'"),
        ("1000)", "unexpected ')'"),
        ("1000 2000", "unexpected '2000'"),
        ("1000 $ 2", "unexpected character '$'"),
        ("1000 ** 2", "position 6"),
        ("+1000", "position 0"),
        ("pow(2,)", "position 6"),
        ("min()", "position 4"),
        ("retry * 1000", "unknown identifier 'retry'"),
        ("Retried * 1000", "unknown identifier 'Retried'"),
        ("log(10)", "unknown function 'log'"),
        ("__import__(1)", "unknown function '__import__'"),
        ("pow(2)", "pow() takes 2 argument(s), got 1"),
        ("pow(2, 3, 4)", "pow() takes 2 argument(s), got 3"),
        ("sqrt(1, 2)", "sqrt() takes 1 argument(s), got 2"),
        ("max(1)", "max() takes 2 argument(s), got 1"),
        ("pow", "function 'pow'"),
        ("retried(1)", "unexpected '('"),
        ("1e", "unexpected 'e'"),
    ],
)
def test_rejections_name_the_problem(text: str, problem: str) -> None:
    with pytest.raises(InvalidRequest, match="retry delay expression") as raised:
        RetryDelay.parse(text)
    assert problem in raised.value.message


def test_text_longer_than_512_characters_is_rejected() -> None:
    fits = "1" + " " * 511
    assert value(fits) == 1
    with pytest.raises(InvalidRequest, match="longer than 512"):
        RetryDelay.parse(fits + " ")


def test_nesting_deeper_than_50_is_rejected() -> None:
    assert value("(" * 50 + "1" + ")" * 50) == 1
    assert value("-" * 50 + "1") == 1  # an even number of minus signs
    with pytest.raises(InvalidRequest, match="nested"):
        RetryDelay.parse("(" * 51 + "1" + ")" * 51)
    with pytest.raises(InvalidRequest, match="nested"):
        RetryDelay.parse("-" * 51 + "1")
    with pytest.raises(InvalidRequest, match="nested"):
        RetryDelay.parse("abs(" * 51 + "1" + ")" * 51)


# --- expressions: hostile input answers instantly and stays bounded ---------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pow(9, 999999999)", DAY_MS),
        ("pow(9, 999999999) - pow(9, 999999999)", 0),  # saturated, never inf - inf
        ("pow(-9, 999999999)", 0),
        ("pow(-9, 999999998)", DAY_MS),
        ("pow(0, -1)", DAY_MS),  # diverges like 1/0
        ("pow(-8, 1 / 3)", 0),  # no real value
        ("pow(retried, retried)", 1),  # 0^0
        ("exp(1e308)", DAY_MS),
        ("exp(-1e308)", 0),
        ("1e999", DAY_MS),
        ("9" * 400, DAY_MS),
        ("1 / 0", DAY_MS),  # x/0 for x > 0 is the cap
        ("1000 / retried", DAY_MS),
        ("-1 / 0", 0),
        ("0 / 0", 0),
        ("sqrt(-4)", 0),
        ("floor(1e300) * ceil(1e300) * round(1e300)", DAY_MS),
        ("1e300 * 1e300 / 1e-300", DAY_MS),
        ("pow(2, 1024) * 0", 0),
    ],
)
def test_hostile_expressions_are_bounded(text: str, expected: int) -> None:
    start = time.perf_counter()
    assert value(text) == expected
    assert time.perf_counter() - start < 0.1


def test_long_flat_expression_evaluates() -> None:
    text = "+".join(["1"] * 256)
    assert len(text) <= 512
    assert value(text) == 256
    assert value("*".join(["9"] * 256)) == DAY_MS


# --- expressions: property --------------------------------------------------------------------

_FUNCTION_ARITY = {"pow": 2, "sqrt": 1, "abs": 1, "exp": 1, "floor": 1, "ceil": 1}
_FUNCTION_ARITY |= {"round": 1, "min": 2, "max": 2}

# (text, nesting depth) pairs, so the test knows which expressions the parser must accept.
_Expr = tuple[str, int]
_leaves: st.SearchStrategy[_Expr] = st.one_of(
    st.just(("retried", 0)),
    st.integers(min_value=0, max_value=10**30).map(lambda n: (str(n), 0)),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(lambda x: (repr(x), 0)),
)


def _extend(children: st.SearchStrategy[_Expr]) -> st.SearchStrategy[_Expr]:
    def binary(parts: tuple[_Expr, str, _Expr]) -> _Expr:
        (left, left_depth), op, (right, right_depth) = parts
        return f"({left} {op} {right})", max(left_depth, right_depth) + 1

    def call(parts: tuple[str, list[_Expr]]) -> _Expr:
        name, args = parts
        args = args[: _FUNCTION_ARITY[name]]
        return f"{name}({', '.join(a for a, _ in args)})", max(d for _, d in args) + 1

    return st.one_of(
        st.tuples(children, st.sampled_from("+-*/"), children).map(binary),
        children.map(lambda c: (f"-{c[0]}", c[1] + 1)),
        st.tuples(
            st.sampled_from(sorted(_FUNCTION_ARITY)), st.lists(children, min_size=2, max_size=2)
        ).map(call),
    )


@given(st.recursive(_leaves, _extend, max_leaves=24), st.integers(-(10**6), 10**100))
def test_any_grammatical_expression_evaluates_within_bounds(expr: _Expr, retried: int) -> None:
    text, depth = expr
    assume(len(text) <= 512 and depth <= 50)
    result = RetryDelay.parse(text).evaluate(retried)
    assert isinstance(result, int)
    assert 0 <= result <= MAX_DELAY_MS


@given(st.text(alphabet=st.sampled_from("0123456789.e+-*/(), retdpowsqrtabxflcilmn$"), max_size=80))
def test_any_text_either_parses_or_is_rejected_as_invalid(text: str) -> None:
    try:
        expression = RetryDelay.parse(text)
    except InvalidRequest:
        return
    assert 0 <= expression.evaluate(3) <= MAX_DELAY_MS


# --- default backoff --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_number", "seconds"),
    [(1, 12), (2, 148), (3, 1808), (4, 22026), (5, 86400), (6, 86400), (100, 86400)],
)
def test_default_backoff_table(retry_number: int, seconds: int) -> None:
    assert default_backoff_ms(retry_number) == seconds * 1000


def test_default_backoff_survives_extreme_retry_numbers() -> None:
    assert default_backoff_ms(10**400) == DAY_MS
    assert default_backoff_ms(0) == 12_000  # counted as the first retry
    assert default_backoff_ms(-(10**400)) == 12_000


# --- response hints ---------------------------------------------------------------------------


def hint(*pairs: tuple[str, str]) -> int | None:
    headers: dict[str, list[str]] = {}
    for name, header_value in pairs:
        headers.setdefault(name, []).append(header_value)
    return retry_hint_ms(headers, NOW_MS)


def http_date(ms: int) -> str:
    return format_datetime(datetime.fromtimestamp(ms / 1000, UTC), usegmt=True)


def test_hint_integer_seconds() -> None:
    assert hint(("Retry-After", "120")) == 120_000
    assert hint(("Retry-After", " 7 ")) == 7_000


def test_hint_zero_means_immediately() -> None:
    assert hint(("Retry-After", "0")) == 0
    assert hint(("X-RateLimit-Reset-Tokens", "0s")) == 0


def test_hint_http_date() -> None:
    assert hint(("Retry-After", http_date(NOW_MS + 90_000))) == 90_000
    assert hint(("Retry-After", "Tue, 14 Nov 2023 22:15:00 GMT")) == 100_000
    assert hint(("Retry-After", "Tue, 14 Nov 2023 23:15:00 +0100")) == 100_000
    assert hint(("Retry-After", "Tue, 14 Nov 2023 22:15:00 -0000")) == 100_000


def test_hint_http_date_in_the_past_means_immediately() -> None:
    assert hint(("Retry-After", http_date(NOW_MS - 3_600_000))) == 0


@pytest.mark.parametrize(
    ("duration", "ms"),
    [
        ("6m5s", 365_000),
        ("1.5s", 1_500),
        ("300ms", 300),
        ("1h", 3_600_000),
        ("1h30m", 5_400_000),
        ("2s500ms", 2_500),
        ("1500us", 2),  # rounded up: never earlier than asked
        ("1500µs", 2),  # micro sign
        ("1500μs", 2),  # Greek mu
        ("1000000ns", 1),
        ("1ns", 1),
        (".5m", 30_000),
        ("24h", DAY_MS),
    ],
)
def test_hint_go_duration(duration: str, ms: int) -> None:
    assert hint(("X-RateLimit-Reset-Requests", duration)) == ms


def test_hint_header_names_are_case_insensitive() -> None:
    assert hint(("retry-after", "3")) == 3_000
    assert hint(("X-RATELIMIT-RESET", "4")) == 4_000
    assert hint(("x-ratelimit-reset-tokens", "5s")) == 5_000


def test_hint_headers_are_read_in_spec_order() -> None:
    all_four = [
        ("X-RateLimit-Reset-Tokens", "4"),
        ("X-RateLimit-Reset-Requests", "3"),
        ("X-RateLimit-Reset", "2"),
        ("Retry-After", "1"),
    ]
    assert hint(*all_four) == 1_000
    assert hint(*all_four[:3]) == 2_000
    assert hint(*all_four[:2]) == 3_000
    assert hint(*all_four[:1]) == 4_000


def test_hint_unparseable_value_gives_way_to_the_next() -> None:
    assert hint(("Retry-After", "soon"), ("X-RateLimit-Reset", "9")) == 9_000
    assert hint(("Retry-After", "soon"), ("Retry-After", "8")) == 8_000


def test_hint_up_to_one_day_is_honoured() -> None:
    assert hint(("Retry-After", "86400")) == DAY_MS
    assert hint(("Retry-After", http_date(NOW_MS + DAY_MS))) == DAY_MS


def test_hint_over_one_day_falls_back() -> None:
    assert hint(("Retry-After", "86401")) is None
    assert hint(("Retry-After", "24h0m0.001s")) is None
    assert hint(("Retry-After", http_date(NOW_MS + DAY_MS + 1000))) is None
    assert hint(("Retry-After", "9" * 90)) is None
    # The first parseable hint decides; a later, shorter one does not overrule it.
    assert hint(("Retry-After", "172800"), ("X-RateLimit-Reset", "5")) is None


@pytest.mark.parametrize(
    "bad",
    ["", "  ", "soon", "-5", "+5", "1.5", "5 s", "5d", "1e3", "0x10", "١٢", "5s5", "s", "m5s",
     "Tue, 99 Nov 2023 22:15:00 GMT", "Mon", "9" * 5000, "\x00", "ms"],
)  # fmt: skip
def test_hint_unparseable_values_are_ignored(bad: str) -> None:
    assert hint(("Retry-After", bad)) is None


def test_no_hint_headers() -> None:
    assert retry_hint_ms({}, NOW_MS) is None
    assert retry_hint_ms({"Content-Type": ["text/plain"], "X-RateLimit-Limit": ["5"]}, 0) is None


@given(st.text(max_size=40))
def test_any_hint_value_is_parsed_or_ignored(text: str) -> None:
    delay = retry_hint_ms({"Retry-After": [text]}, NOW_MS)
    assert delay is None or 0 <= delay <= MAX_DELAY_MS


# --- next_retry_delay_ms: the order of spec 9.3 -----------------------------------------------


def test_hint_wins_over_expression_and_default() -> None:
    delay = next_retry_delay_ms(
        retry_number=3,
        retry_delay=RetryDelay.parse("5000"),
        response_headers={"Retry-After": ["2"]},
        now_ms=NOW_MS,
    )
    assert delay == 2_000


def test_expression_is_evaluated_with_retried_one_less_than_the_retry_number() -> None:
    expression = RetryDelay.parse("1000 * (1 + retried)")
    got = [
        next_retry_delay_ms(
            retry_number=k, retry_delay=expression, response_headers={}, now_ms=NOW_MS
        )
        for k in (1, 2, 3)
    ]
    assert got == [1000, 2000, 3000]


def test_expression_is_used_when_the_hint_is_too_long_or_unparseable() -> None:
    for headers in ({"Retry-After": ["172800"]}, {"Retry-After": ["later"]}):
        delay = next_retry_delay_ms(
            retry_number=1,
            retry_delay=RetryDelay.parse("750"),
            response_headers=headers,
            now_ms=NOW_MS,
        )
        assert delay == 750


def test_default_backoff_without_hint_or_expression() -> None:
    got = [
        next_retry_delay_ms(retry_number=k, retry_delay=None, response_headers={}, now_ms=NOW_MS)
        for k in (1, 2, 3, 4, 5)
    ]
    assert got == [12_000, 148_000, 1_808_000, 22_026_000, DAY_MS]


def test_scale_shortens_the_default_backoff_only() -> None:
    def delay(retry_delay: RetryDelay | None, headers: dict[str, list[str]]) -> int:
        return next_retry_delay_ms(
            retry_number=2,
            retry_delay=retry_delay,
            response_headers=headers,
            now_ms=NOW_MS,
            scale=0.001,
        )

    assert delay(None, {}) == 148
    assert delay(RetryDelay.parse("5000"), {}) == 5000
    assert delay(None, {"Retry-After": ["3"]}) == 3000


def test_scale_keeps_the_delay_within_bounds() -> None:
    for scale, expected in ((0.0, 0), (-1.0, 0), (float("nan"), 0), (1e9, DAY_MS)):
        got = next_retry_delay_ms(
            retry_number=1, retry_delay=None, response_headers={}, now_ms=NOW_MS, scale=scale
        )
        assert got == expected
