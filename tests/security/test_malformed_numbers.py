"""Malformed numbers in query parameters, JSON bodies and headers are the caller's error: 400,
never a 500 (spec 1.4). Found by probing the places where Homing turns text into integers.

Each known bug is an xfail(strict=True) case naming the file and line; the cases that already
answer correctly are asserted plainly so they stay that way.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.security.support import raw_request
from tests.support.server import RunningServer

JSON = {"Content-Type": "application/json"}

ALREADY_REFUSED = [
    ("GET", "/v2/logs?fromDate=nan", None),
    ("GET", "/v2/logs?fromDate=soon", None),
    ("GET", "/v2/logs?count=-1", None),
    ("GET", "/v2/dlq?responseStatus=abc", None),
    ("POST", "/v2/flowControl/k/pin?rate=1&period=99999999999999999999999", None),
    ("POST", "/v2/queues", b'{"queueName": "q", "parallelism": 99999999999999999999999}'),
    ("POST", "/v2/queues", b'{"queueName": "q", "parallelism": "2"}'),
]


@pytest.mark.parametrize(("method", "target", "body"), ALREADY_REFUSED)
def test_malformed_numbers_that_are_refused_with_400(
    start_server: Callable[..., RunningServer], method: str, target: str, body: bytes | None
) -> None:
    server = start_server()
    status, answer = raw_request(server.port, method, target, JSON if body else {}, body or b"")
    print(f"\n{method} {target} {body!r} -> {status} {answer}")
    assert status == 400


def _bug(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=reason)


FROM_DATE = _bug(
    "homing/api/filters.py _ms() (line ~55) does int(float(value)) and catches only ValueError: "
    "'inf'/'1e400' raise OverflowError, and '1e300' becomes an int too large for SQLite, which "
    "raises OverflowError at the query -> 500 (GET /v2/logs, /v2/events, /v2/dlq, DELETE "
    "/v2/messages with query or JSON-body fromDate/toDate)"
)
CURSOR = _bug(
    "homing/api/logs.py _before() (line ~27) does int(float(cursor)) and catches only "
    "ValueError: 'inf' -> OverflowError; '1e300' / '-1e300' -> an int SQLite cannot bind -> 500"
)
DIGITS = _bug(
    "str.isdigit() accepts superscripts such as '²' that int() refuses -> ValueError -> 500: "
    "homing/api/filters.py count() (line ~131) and the responseStatus filter (line ~94), "
    "homing/api/flow_control.py _positive() (line ~63), homing/storage/sqlite/backend.py "
    "list_dlq() cursor (`int(cursor) if cursor.isdigit()`)"
)
HUGE = _bug(
    "an integer of 23 digits passes isdigit() and reaches SQLite, which cannot bind it "
    "(OverflowError -> 500): the responseStatus filter (homing/api/filters.py line ~96) and "
    "the DLQ cursor (homing/storage/sqlite/backend.py list_dlq)"
)

KNOWN_BUGS = [
    pytest.param("GET", "/v2/logs?fromDate=inf", None),
    pytest.param("GET", "/v2/logs?fromDate=1e400", None),
    pytest.param("GET", "/v2/logs?toDate=1e300", None),
    pytest.param("GET", "/v2/dlq?fromDate=1e300", None),
    pytest.param("DELETE", "/v2/messages?fromDate=inf", None),
    pytest.param("DELETE", "/v2/messages", b'{"fromDate": 1e300}'),
    pytest.param("GET", "/v2/logs?cursor=inf", None),
    pytest.param("GET", "/v2/events?cursor=-1e300", None),
    pytest.param("GET", "/v2/logs?count=%C2%B2", None),
    pytest.param("GET", "/v2/dlq?count=%C2%B2", None),
    pytest.param("DELETE", "/v2/messages?count=%C2%B2", None),
    pytest.param("GET", "/v2/dlq?responseStatus=%C2%B2", None),
    pytest.param("GET", "/v2/dlq?cursor=%C2%B2", None),
    pytest.param("POST", "/v2/flowControl/k/pin?parallelism=%C2%B2", None),
    pytest.param("GET", "/v2/dlq?responseStatus=99999999999999999999999", None),
    pytest.param("GET", "/v2/dlq?cursor=99999999999999999999999", None),
]


@pytest.mark.parametrize(("method", "target", "body"), KNOWN_BUGS)
def test_malformed_numbers_are_refused_with_400(
    start_server: Callable[..., RunningServer], method: str, target: str, body: bytes | None
) -> None:
    server = start_server()
    status, answer = raw_request(server.port, method, target, JSON if body else {}, body or b"")
    print(f"\n{method} {target} {body!r} -> {status} {answer}")
    assert status == 400
