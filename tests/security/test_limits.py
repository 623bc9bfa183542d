"""Limits and header injection (spec 4.1, 9.1, 9.4, 14): what a publisher cannot make Homing do.

* bodies over the configured maximum are refused with 413, whether announced by
  Content-Length or streamed chunked, on publish, enqueue, schedule create and batch;
* too many forwarded headers, or too many header bytes, are refused;
* CR, LF or NUL in a forwarded header value, headers Homing sets itself (`Upstash-Signature`,
  `Upstash-Message-Id`, ...), hop-by-hop headers, `Host` and `Content-Length` cannot be forwarded;
  other `Upstash-Forward-Upstash-*` names are forwarded;
* hostile retry-delay expressions and durations answer at once with 201 or 400, never 500, and a
  hostile `Retry-After` from a destination cannot stall the server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.security.support import raw_request
from tests.support.http import AUTH, log_entries
from tests.support.receiver import Receiver, Reply
from tests.support.server import RunningServer
from tests.support.waiting import wait_until

LIMIT = 1024 * 1024
BATCH_LIMIT = 2 * 1024 * 1024


@pytest.fixture
def limited(start_server: Callable[..., RunningServer]) -> RunningServer:
    return start_server(max_body_size=LIMIT, max_batch_size=BATCH_LIMIT)


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"x" * n


def test_bodies_over_the_limit_are_refused_with_413(
    limited: RunningServer, receiver: Receiver
) -> None:
    url = receiver.url("/big")
    endpoints = {
        "publish": f"/v2/publish/{url}",
        "enqueue": f"/v2/enqueue/big/{url}",
        "schedule": f"/v2/schedules/{url}",
    }
    results: dict[str, int] = {}
    with httpx.Client(base_url=limited.base_url, headers=AUTH, timeout=30) as client:
        for name, path in endpoints.items():
            headers = {"Upstash-Cron": "0 0 1 1 *"} if name == "schedule" else {}
            results[f"{name} at limit"] = client.post(
                path, content=b"x" * LIMIT, headers=headers
            ).status_code
            results[f"{name} limit+1"] = client.post(
                path, content=b"x" * (LIMIT + 1), headers=headers
            ).status_code
            results[f"{name} chunked limit+1"] = client.post(
                path, content=_chunks(LIMIT + 1), headers=headers
            ).status_code
        started = time.monotonic()
        results["publish chunked 64 MiB"] = client.post(
            endpoints["publish"], content=_chunks(64 * 1024 * 1024)
        ).status_code
        flood_s = time.monotonic() - started
        batch = orjson.dumps([{"destination": url, "body": "x" * 1000}] * (BATCH_LIMIT // 1000))
        results["batch over batch limit"] = client.post("/v2/batch", content=batch).status_code
        results["batch chunked over batch limit"] = client.post(
            "/v2/batch", content=_chunks(BATCH_LIMIT + 1)
        ).status_code
    print(
        f"\nbody limits (max {LIMIT} B, batch {BATCH_LIMIT} B): {results} "
        f"64MiB_refused_in_s={flood_s:.2f}"
    )
    for name in endpoints:
        assert results[f"{name} at limit"] in (200, 201)
        assert results[f"{name} limit+1"] == 413
        assert results[f"{name} chunked limit+1"] == 413
    assert results["publish chunked 64 MiB"] == 413 and flood_s < 5
    assert results["batch over batch limit"] == 413
    assert results["batch chunked over batch limit"] == 413


def test_a_batch_item_over_the_body_limit_is_refused_with_413(limited: RunningServer) -> None:
    item = {"destination": "http://127.0.0.1:1/", "body": "x" * (LIMIT + 1)}
    status, _ = raw_request(
        limited.port,
        "POST",
        "/v2/batch",
        {"Content-Type": "application/json"},
        orjson.dumps([item]),
    )
    print(f"\nbatch item of {LIMIT + 1} B -> {status}")
    assert status == 413


def batch_item_status(
    server: RunningServer, headers: dict[str, Any], url: str = "http://127.0.0.1:1/x"
) -> tuple[int, Any]:
    body = orjson.dumps([{"destination": url, "headers": headers}])
    return raw_request(server.port, "POST", "/v2/batch", {"Content-Type": "application/json"}, body)


def test_too_many_or_too_large_headers_are_refused(limited: RunningServer) -> None:
    results = {
        "100 forwarded headers": batch_item_status(
            limited, {f"Upstash-Forward-H{i}": "v" for i in range(100)}
        )[0],
        "101 forwarded headers (batch)": batch_item_status(
            limited, {f"Upstash-Forward-H{i}": "v" for i in range(101)}
        )[0],
        "101 forwarded headers (HTTP)": raw_request(
            limited.port,
            "POST",
            "/v2/publish/http://127.0.0.1:1/",
            {f"Upstash-Forward-H{i}": "v" for i in range(101)},
        )[0],
        "70 KB forwarded value (batch)": batch_item_status(
            limited, {"Upstash-Forward-Big": "a" * 70_000}
        )[0],
        "70 KB over many headers (batch)": batch_item_status(
            limited, {f"X-Pad-{i}": "a" * 1000 for i in range(70)}
        )[0],
        "100 KB header (HTTP)": raw_request(
            limited.port,
            "POST",
            "/v2/publish/http://127.0.0.1:1/",
            {"Upstash-Forward-Big": "a" * 100_000},
        )[0],
        "1 MB header (HTTP)": raw_request(
            limited.port, "POST", "/v2/publish/http://127.0.0.1:1/", {"X-Big": "a" * 1_000_000}
        )[0],
    }
    print(f"\nheader limits: {results}")
    assert results.pop("100 forwarded headers") == 201
    assert all(400 <= status < 500 for status in results.values())


INJECTIONS = {
    "CRLF in a forwarded value": {"Upstash-Forward-X-Note": "a\r\nInjected: 1"},
    "LF in a forwarded value": {"Upstash-Forward-X-Note": "a\nInjected: 1"},
    "CR in a forwarded value": {"Upstash-Forward-X-Note": "a\rb"},
    "NUL in a forwarded value": {"Upstash-Forward-X-Note": "a\x00b"},
    "CRLF in Content-Type": {"Content-Type": "text/plain\r\nInjected: 1"},
    "CRLF in traceparent": {"traceparent": "00-abc\r\nInjected: 1"},
    "CRLF in a callback header": {
        "Upstash-Callback": "http://127.0.0.1:1/cb",
        "Upstash-Callback-Forward-X": "a\r\nb",
    },
    "NUL in a failure-callback header": {
        "Upstash-Failure-Callback": "http://127.0.0.1:1/cb",
        "Upstash-Failure-Callback-X": "a\x00b",
    },
    "CRLF in a forwarded name": {"Upstash-Forward-X\r\nInjected": "1"},
    "space in a forwarded name": {"Upstash-Forward-X Y": "1"},
    "colon in a forwarded name": {"Upstash-Forward-X:Y": "1"},
    "empty forwarded name": {"Upstash-Forward-": "1"},
}
RESERVED = [
    "Upstash-Signature",
    "Upstash-Message-Id",
    "Upstash-Retried",
    "Upstash-Topic-Name",
    "Upstash-Schedule-Id",
    "Upstash-Caller-Ip",
    "upstash-signature",
    "UPSTASH-MESSAGE-ID",
]
HOP_BY_HOP = [
    "Connection",
    "Keep-Alive",
    "Transfer-Encoding",
    "TE",
    "Trailer",
    "Upgrade",
    "Proxy-Authorization",
    "Proxy-Authenticate",
    "Proxy-Connection",
    "Host",
    "Content-Length",
    "content-length",
    "HOST",
]


def test_header_injection_is_refused_and_forbidden_forwarded_names_are_dropped(
    limited: RunningServer,
) -> None:
    refused = {
        label: batch_item_status(limited, headers)[0] for label, headers in INJECTIONS.items()
    }
    # The same through real HTTP headers, where the transport allows the byte at all.
    refused["HTTP obs-fold continuation"] = raw_request(
        limited.port,
        "POST",
        "/v2/publish/http://127.0.0.1:1/",
        {"Upstash-Forward-X": "a\r\n Injected: 1"},
    )[0]
    # Names Homing sets itself or that describe one hop: the workflow SDKs forward every header
    # they received, so these are accepted and dropped (never delivered, see the next test).
    dropped: dict[str, dict[str, str]] = {}
    for name in RESERVED:
        dropped[f"forward {name}"] = {f"Upstash-Forward-{name}": "forged"}
        dropped[f"callback-forward {name}"] = {
            "Upstash-Callback": "http://127.0.0.1:1/cb",
            f"Upstash-Callback-Forward-{name}": "forged",
        }
    for name in HOP_BY_HOP:
        dropped[f"forward {name}"] = {f"Upstash-Forward-{name}": "x"}
        dropped[f"failure-callback {name}"] = {
            "Upstash-Failure-Callback": "http://127.0.0.1:1/cb",
            f"Upstash-Failure-Callback-{name}": "x",
        }
    accepted = {label: batch_item_status(limited, headers)[0] for label, headers in dropped.items()}
    for n in RESERVED[:6] + HOP_BY_HOP[:11]:
        accepted[f"HTTP forward {n}"] = raw_request(
            limited.port, "POST", "/v2/publish/http://127.0.0.1:1/", {f"Upstash-Forward-{n}": "x"}
        )[0]
    wrong = {k: v for k, v in refused.items() if v != 400}
    wrong.update({k: v for k, v in accepted.items() if v != 201})
    print(f"\nheader injection: refused={len(refused)} dropped_names={len(accepted)} other={wrong}")
    assert wrong == {}


def test_forwarded_headers_arrive_as_given_and_homing_own_headers_cannot_be_forged(
    limited: RunningServer, receiver: Receiver
) -> None:
    headers = {
        "Upstash-Forward-Upstash-Custom": "custom value",
        "Upstash-Forward-Upstash-Workflow-RunId": "wfr_1",
        "Upstash-Forward-Upstash-Region": "EU-CENTRAL-1",
        "Upstash-Forward-User-Agent": "forged-agent/1.0",
        "Upstash-Forward-X-Multi": "one",
        "Upstash-Header-Forward": "true",  # webhook mode: plain headers forwarded too...
        "X-Webhook": "plain",
        "Upstash-Signature": "forged",  # ...but never Upstash-* ones
        "Upstash-Message-Id": "msg_forged",
    }
    status, answer = raw_request(
        limited.port, "POST", f"/v2/publish/{receiver.url('/fwd')}", headers
    )
    assert status == 201, answer
    [got] = receiver.wait_for(1, "/fwd")
    sent = {k.lower(): v for k, v in got.headers.items()}
    shown = ("upstash-", "user-agent", "x-")
    forwarded = sorted(
        (k, v) for k, v in sent.items() if k.startswith(shown) and k != "upstash-signature"
    )
    print(f"\nforwarded: {forwarded}")
    assert sent["upstash-custom"] == "custom value"
    assert "upstash-workflow-runid" not in sent  # set by Homing on workflow deliveries only
    assert sent["upstash-region"] == "EU-CENTRAL-1"
    assert sent["x-multi"] == "one" and sent["x-webhook"] == "plain"
    assert sent["user-agent"] == "Upstash-QStash"
    assert sent["upstash-message-id"] == answer["messageId"]  # type: ignore[index]
    assert sent["upstash-signature"] != "forged" and sent["upstash-retried"] == "0"
    assert sum(k.lower() == "user-agent" for k in got.headers) == 1


EXPRESSIONS = [
    "pow(9, 999999999)",
    "pow(pow(9, 9), pow(9, 9))",
    "exp(exp(exp(exp(99))))",
    "1/0",
    "-1/0",
    "0/0",
    "sqrt(-1)",
    "pow(-8, 1/3)",
    "pow(0, -1)",
    "9" * 512,
    "1" + "+1" * 255,
    "1" + "*-1" * 170,
    "(" * 50 + "1" + ")" * 50,
    "(" * 51 + "1" + ")" * 51,
    "-" * 51 + "1",
    "max(" * 25 + "1" + ", 2)" * 25,
    "retried" * 73,
    "1e999999",
    "pow(retried, 1e308)",
    "floor(1e308) * ceil(1e308)",
    "round(-0.5)",
    "9" * 513,
    "__import__('os')",
    "1;2",
    "",
]


def test_hostile_retry_delay_expressions_answer_at_once(limited: RunningServer) -> None:
    timings: list[tuple[str, int, float]] = []
    for expr in EXPRESSIONS:
        started = time.monotonic()
        status, _ = batch_item_status(limited, {"Upstash-Retry-Delay": expr})
        timings.append((expr[:24], status, time.monotonic() - started))
    slowest = max(t for _, _, t in timings)
    statuses = {s for _, s, _ in timings}
    print(
        f"\nretry-delay expressions: n={len(timings)} statuses={sorted(statuses)} "
        f"slowest_s={slowest:.3f} "
        f"refused={[e for e, s, _ in timings if s == 400]}"
    )
    assert statuses <= {201, 400}
    assert slowest < 0.5


def test_a_huge_retry_delay_is_capped_at_one_day(
    start_server: Callable[..., RunningServer], receiver: Receiver
) -> None:
    from homing.clock import ManualClock

    server = start_server(clock=ManualClock(start_ms=1_800_000_000_000))
    receiver.on("/down", lambda r: Reply(500, b"down"))
    headers = {"Upstash-Retry-Delay": "pow(9, 999999999)", "Upstash-Retries": "1"}
    status, _ = raw_request(server.port, "POST", f"/v2/publish/{receiver.url('/down')}", headers)
    assert status == 201
    assert wait_until(lambda: list(log_entries(server.base_url, state="RETRY")), timeout=10)
    [retry] = list(log_entries(server.base_url, state="RETRY"))
    delay = retry["nextDeliveryTime"] - retry["time"]
    print(f"\npow(9, 999999999) -> next attempt in {delay} ms")
    assert delay == 86_400_000


def test_a_hostile_retry_after_header_cannot_stall_the_server(
    start_server: Callable[..., RunningServer], receiver: Receiver
) -> None:
    """`Retry-After: 11s11s...11sx` (100 characters) once made the Go-duration regex backtrack
    for minutes on the event loop (fixed in homing/retry.py). The retry is scheduled at once
    (the hint is not a valid duration, so the retry-delay expression applies) and the server
    keeps answering meanwhile."""
    server = start_server()
    hint = "11s" * 33 + "x"
    receiver.on(
        "/redos",
        lambda r: Reply(
            503, b"busy", {"Retry-After": hint, "X-RateLimit-Reset": "1.1s" * 24 + "x"}
        ),
    )
    headers = {"Upstash-Retries": "1", "Upstash-Retry-Delay": "50"}
    started = time.monotonic()
    status, _ = raw_request(server.port, "POST", f"/v2/publish/{receiver.url('/redos')}", headers)
    assert status == 201
    health: list[float] = []
    while len(receiver.to("/redos")) < 2 and time.monotonic() - started < 10:
        t = time.monotonic()
        httpx.get(server.base_url + "/healthz", timeout=5)
        health.append(time.monotonic() - t)
        time.sleep(0.02)
    both = time.monotonic() - started
    print(
        f"\nhostile Retry-After: both attempts within {both:.2f}s, healthz max "
        f"{max(health or [0]) * 1000:.0f} ms over {len(health)} probes"
    )
    assert len(receiver.to("/redos")) == 2 and both < 3
    assert max(health or [0]) < 0.5


def test_retry_hints_are_parsed_in_linear_time() -> None:
    """The parser behind the previous test, on the inputs that made the old regex backtrack."""
    from homing.retry import retry_hint_ms

    hostile = ["11s" * 33 + "x", "111s" * 24 + "1x", "1.1s" * 24 + "x", "1" * 99 + "x", ".1s" * 33]
    slowest = 0.0
    for value in hostile:
        started = time.monotonic()
        retry_hint_ms({"Retry-After": [value]}, 0)
        slowest = max(slowest, time.monotonic() - started)
    print(f"\nretry hint parsing: {len(hostile)} hostile values, slowest {slowest * 1000:.2f} ms")
    assert slowest < 0.05


DURATIONS = {
    "Upstash-Delay": [
        "²",
        "\u0661\u0660s",
        "9" * 5000,
        "9" * 400 + "d",
        "99999999999999999999999d",
        "1" * 30,
    ],
    "Upstash-Timeout": ["9" * 5000, "9" * 400 + "h", "³s"],
    "Upstash-Callback-Delay": ["9" * 400 + "d", "99999999999999999999999d"],
    "Upstash-Failure-Callback-Timeout": ["9" * 5000],
    "Upstash-Flow-Control-Value": ["period=" + "9" * 400 + "d", "period=²"],
}


def test_hostile_durations_are_refused_with_400(limited: RunningServer) -> None:
    results: dict[str, int] = {}
    for name, values in DURATIONS.items():
        for value in values:
            headers = {name: value}
            if "Callback" in name:
                headers[
                    "Upstash-Callback"
                    if name.startswith("Upstash-Callback")
                    else "Upstash-Failure-Callback"
                ] = "http://127.0.0.1:1/cb"
            if "Flow" in name:
                headers["Upstash-Flow-Control-Key"] = "k"
            results[f"{name}: {value[:12]}"] = batch_item_status(limited, headers)[0]
    print(f"\nhostile durations: {results}")
    assert set(results.values()) == {400}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Upstash-Retries", "²"),
        ("Upstash-Retries", "--5"),
        ("Upstash-Retries", "9" * 5000),
        ("Upstash-Not-Before", "²"),
        ("Upstash-Callback-Retries", "²"),
        ("Upstash-Flow-Control-Value", "parallelism=²"),
    ],
)
def test_malformed_integers_are_refused_with_400(
    limited: RunningServer, name: str, value: str
) -> None:
    headers = {name: value}
    if name == "Upstash-Callback-Retries":
        headers["Upstash-Callback"] = "http://127.0.0.1:1/cb"
    if name.startswith("Upstash-Flow"):
        headers["Upstash-Flow-Control-Key"] = "k"
    status = batch_item_status(limited, headers)[0]
    print(f"\n{name}: {value[:12]!r} -> {status}")
    assert status == 400
