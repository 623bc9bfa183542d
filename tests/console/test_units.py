"""The console's pure helpers: masking, signing, throttling, charts, search forms."""

from __future__ import annotations

import time

import pytest
from starlette.datastructures import QueryParams

from homing.console import charts, filtering, masking, render
from homing.console.auth import LoginThrottle, Sessions, Signer
from homing.models import LogState


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:hunter2@example.com/x", "https://user:•••@example.com/x"),
        ("https://:pw@example.com/", "https://•••@example.com/"),
        ("https://example.com/h?a=1&api_key=sk_1&token=t", "https://example.com/h?a=1&api_key=•••&token=•••"),
        ("https://example.com/h?q=%20x", "https://example.com/h?q=%20x"),
        ("not a url", "not a url"),
    ],
)  # fmt: skip
def test_urls_lose_their_credentials(url: str, shown: str) -> None:
    assert masking.mask_url(url) == shown


def test_secret_headers_and_keys_are_masked() -> None:
    assert masking.mask_header_value("Authorization", "Bearer abc.def") == "Bearer •••"
    assert masking.mask_header_value("X-Api-Key", "k-123") == "•••"
    assert masking.mask_header_value("Content-Type", "text/plain") == "text/plain"
    assert masking.mask_header_value("Authorization", "REDACTED:ab") == "REDACTED:ab"
    assert masking.mask_secret("sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r") == "sig_7kYj…"
    assert masking.mask_secret("short") == "s…"


def test_signed_values_resist_tampering() -> None:
    signer = Signer()
    token = signer.sign("session", {"a": "acct"})
    assert signer.unsign("session", token) == {"a": "acct"}
    assert signer.unsign("flash", token) is None  # bound to its purpose
    assert Signer().unsign("session", token) is None  # and to this process's key
    payload, _, mac = token.partition(".")
    assert signer.unsign("session", payload + "x." + mac) is None
    assert signer.unsign("session", "ü.ü") is None


def test_sessions_expire_and_can_be_revoked(monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = Sessions(Signer())
    session, cookie = sessions.issue("acct", read_only=True)
    assert sessions.read(cookie) == session
    assert sessions.csrf_token(cookie) != sessions.csrf_token(
        sessions.issue("acct", read_only=True)[1]
    )
    later = time.time() + 9 * 3600
    monkeypatch.setattr(time, "time", lambda: later)
    assert sessions.read(cookie) is None
    monkeypatch.undo()
    sessions.revoke(session)
    assert sessions.read(cookie) is None


def test_the_throttle_refuses_the_sixth_attempt_in_a_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    throttle = LoginThrottle(limit=5, window_s=60)
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    assert [throttle.allow("1.2.3.4") for _ in range(6)] == [True] * 5 + [False]
    assert throttle.allow("5.6.7.8")  # per client
    now[0] += 61
    assert throttle.allow("1.2.3.4")


def test_percentiles_use_the_nearest_rank() -> None:
    assert charts.percentiles([]) == {}
    assert charts.percentiles(list(range(1, 101))) == {"p50": 50, "p90": 90, "p99": 99}
    assert charts.percentiles([7]) == {"p50": 7, "p90": 7, "p99": 7}


def test_event_counts_become_buckets_and_lines() -> None:
    now = 10 * 60_000 + 30_000
    start = charts.HOUR.start(now)
    rows = [(start, "CREATED", 4), (now - 30_000, "DELIVERED", 2), (now - 30_000, "ERROR", 2)]
    counts = charts.bucketed(rows, charts.HOUR, now)
    assert counts["CREATED"][0] == 4 and counts["DELIVERED"][-1] == 2
    assert charts.overall_ratio(counts) == 0.5
    assert charts.totals(counts) == {"published": 4, "delivered": 2, "retrying": 0, "failed": 0}
    prims = charts.chart(counts, charts.HOUR, now)
    lines = [p for p in prims if p["tag"] == "polyline" and "line" in p["attrs"]["class"]]
    assert len(lines) == 4
    assert all(len(p["attrs"]["points"].split()) == 60 for p in lines)
    assert any(p["attrs"]["class"] == "s-ratio-dot" for p in prims)  # one bucket had attempts


def test_bodies_are_truncated_and_binary_is_flagged() -> None:
    shown = render.body(b"x" * 5000)
    assert len(shown.text) == render.BODY_PREVIEW and shown.more == 5000 - render.BODY_PREVIEW
    assert render.body(b"\xff\xfe").binary
    assert render.body("é".encode() * 3000).text.endswith("é")  # never cut inside a character


def test_search_forms_use_the_api_parser() -> None:
    found = filtering.search(
        QueryParams("state=IN_PROGRESS&queueName=q&from=2026-01-01T00:00&cursor=42"),
        filtering.MESSAGE_FIELDS,
    )
    assert found.filter.queue_names == ("q",)
    assert LogState.RETRY in found.filter.states
    assert found.filter.from_ms == 1767225600000
    assert filtering.log_cursor(found.cursor) == 42
    assert found.link("7") == "?state=IN_PROGRESS&queueName=q&from=2026-01-01T00%3A00&cursor=7"
    bad = filtering.search(QueryParams("from=yesterday"), filtering.MESSAGE_FIELDS)
    assert bad.error and "From" in bad.error
