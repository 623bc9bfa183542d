"""The console's pure helpers: masking, signing, throttling, charts, search forms."""

from __future__ import annotations

import time

import pytest
from starlette.datastructures import QueryParams

from homing.console import charts, filtering, masking, render
from homing.console.auth import LoginThrottle, Sessions, Signer
from homing.console.pages import runs
from homing.models import LogState, Redaction, Run, RunConfig, RunState, RunStep


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


def test_run_searches_use_the_api_parser() -> None:
    found = filtering.run_search(
        QueryParams("state=RUN_FAILED&workflowUrl=https://a.example/wf&cursor=9")
    )
    assert found.filter.states == (RunState.FAILED,)
    assert found.filter.url == "https://a.example/wf" and not found.filter.url_exact
    assert found.link("3") == "?state=RUN_FAILED&workflowUrl=https%3A%2F%2Fa.example%2Fwf&cursor=3"
    by_id = filtering.run_search(QueryParams("workflowRunId=wfr_1&state=RUN_SUCCESS"))
    assert by_id.filter.run_ids == ("wfr_1",)
    bad = filtering.run_search(QueryParams("state=done"))
    assert bad.error == "unknown workflow run state 'done'" and bad.cursor is None


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (b'{"stepId":2,"stepName":"charge","stepType":"Run","out":"1"}', ("charge", 2, "Run")),
        (b'{"stepId":true,"stepName":7}', (None, None, None)),
        (b'{"order":1}', (None, None, None)),
        (b"[1]", (None, None, None)),
        (b"{not json", (None, None, None)),
        (b"\xff", (None, None, None)),
    ],
)  # fmt: skip
def test_a_step_is_named_from_its_result_body(
    body: bytes, fields: tuple[str | None, int | None, str | None]
) -> None:
    assert runs.step_fields(body) == fields


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        (b'{"stepId":1,"stepType":"Wait","waitEventId":"paid","waitTimeout":false,"out":"MQ=="}',
         runs.WaitResult("paid", timed_out=False)),
        (b'{"stepId":1,"stepType":"Wait","waitEventId":"paid","waitTimeout":true}',
         runs.WaitResult("paid", timed_out=True)),
        (b'{"stepId":1,"stepName":"charge","stepType":"Run"}', None),
        (b'{"waitEventId":7}', None),
        (b"{not json", None),
    ],
)  # fmt: skip
def test_a_wait_steps_outcome_is_read_from_its_result_body(
    body: bytes, outcome: runs.WaitResult | None
) -> None:
    assert runs.wait_result(body) == outcome


def _run(redact: Redaction, payload: bytes) -> Run:
    step = RunStep(1, "msg_1", "step", b'{"stepId":1,"stepName":"charge"}', 5)
    return Run(
        account_id="acct",
        run_id="wfr_1",
        url="https://a.example/wf",
        state=RunState.SUCCESS,
        created_ms=1,
        payload=payload,
        init_message_id="msg_0",
        config=RunConfig(headers={"X-Card": ["4242"], "X-Team": ["blue"]}, redact=redact),
        result=b'"done"',
        steps=(RunStep(0, "msg_0", "step", payload, 1), step),
    )


def test_a_run_is_shown_with_its_own_redaction_and_binary_as_base64() -> None:
    plain = runs.run_view(_run(Redaction(), b"\x00\xff"))
    assert plain["payload"].binary and plain["payload"].text == "AP8="
    assert [s.name for s in plain["steps"]] == [None, "charge"]
    assert plain["headers"]["X-Card"] == ["4242"]
    hidden = runs.run_view(
        _run(Redaction(body=True, header_names=frozenset({"x-card"})), b"card=4242")
    )
    assert hidden["payload"].text.startswith("REDACTED:") and "4242" not in hidden["payload"].text
    assert hidden["result"].text.startswith("REDACTED:")
    assert [s.name for s in hidden["steps"]] == [None, None]  # nothing read from a hidden body
    assert all(s.body.text.startswith("REDACTED:") for s in hidden["steps"])
    assert hidden["headers"]["X-Card"][0].startswith("REDACTED:")
    assert hidden["headers"]["X-Team"] == ["blue"]
