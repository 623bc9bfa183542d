"""Malformed numbers in query parameters, JSON bodies and headers are the caller's error: 400,
never a 500 (spec 1.4). Found by probing the places where Homing turns text into integers:
`inf`, `1e300`, superscript digits such as `²`, and integers too large for SQLite.
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


# Each of these answered 500 when this battery was written (found by probing and by
# schemathesis; fixed since in filters.py, logs.py, flow_control.py and the SQLite backend).
FORMERLY_500 = [
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


@pytest.mark.parametrize(("method", "target", "body"), FORMERLY_500)
def test_malformed_numbers_that_once_crashed_are_refused_with_400(
    start_server: Callable[..., RunningServer], method: str, target: str, body: bytes | None
) -> None:
    server = start_server()
    status, answer = raw_request(server.port, method, target, JSON if body else {}, body or b"")
    print(f"\n{method} {target} {body!r} -> {status} {answer}")
    assert status == 400
