"""`parse_options`: the configuration headers of spec 4.1 (and their query form, 4.3) -> options."""

from __future__ import annotations

import pytest

from homing.errors import InvalidRequest
from homing.headers import Limits, parse_options
from homing.models import Redaction

CB = "https://example.com/cb"


def parse(*headers: tuple[str, str], query: list[tuple[str, str]] | None = None, **kw: object):  # type: ignore[no-untyped-def]
    return parse_options(list(headers), query or [], **kw)  # type: ignore[arg-type]


def refused(*headers: tuple[str, str], query: list[tuple[str, str]] | None = None) -> str:
    with pytest.raises(InvalidRequest) as caught:
        parse(*headers, query=query)
    return caught.value.message


# -- defaults and names -----------------------------------------------------------------------


def test_no_headers_means_the_defaults() -> None:
    o = parse()
    assert (o.method, o.headers, o.max_retries, o.delay_s) == ("POST", {}, None, 0)
    assert o.retry_delay is None
    assert (o.not_before_s, o.timeout_s, o.callback, o.failure_callback) == (None, None, None, None)
    assert (o.dedup_id, o.content_dedup, o.flow, o.labels) == (None, False, None, ())
    assert o.redact == Redaction()
    assert o.given == frozenset()


def test_header_names_are_case_insensitive() -> None:
    upper = parse(("UPSTASH-METHOD", "put"), ("UPSTASH-RETRIES", "2"), ("UPSTASH-DELAY", "10s"))
    lower = parse(("upstash-method", "PUT"), ("upstash-retries", "2"), ("upstash-delay", "10s"))
    for o in (upper, lower):
        assert (o.method, o.max_retries, o.delay_s) == ("PUT", 2, 10)
    assert lower.given == {"method", "max_retries", "delay"}


@pytest.mark.parametrize("method", ["GET", "post", "Put", "PATCH", "delete"])
def test_methods_are_stored_upper_case(method: str) -> None:
    assert parse(("Upstash-Method", method)).method == method.upper()


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "OPTIONS", "HEAD", "", "G ET"])
def test_other_methods_are_refused(method: str) -> None:
    refused(("Upstash-Method", method))


# -- forwarded headers ------------------------------------------------------------------------


def test_forwarded_headers_lose_the_prefix_and_get_canonical_names() -> None:
    o = parse(
        ("Upstash-Forward-test-header", "a"),
        ("upstash-forward-X-API-KEY", "k"),
        ("Upstash-Forward-Test-Header", "b"),
        ("Content-Type", "application/json"),
    )
    assert o.headers == {
        "Test-Header": ["a", "b"],
        "X-Api-Key": ["k"],
        "Content-Type": ["application/json"],
    }
    assert "headers" in o.given


@pytest.mark.parametrize("forwarded_first", [True, False])
def test_forwarded_content_type_replaces_the_plain_one(forwarded_first: bool) -> None:
    plain = ("Content-Type", "text/plain")
    forwarded = ("Upstash-Forward-content-type", "application/json")  # as Python sends it
    pairs = [forwarded, plain] if forwarded_first else [plain, forwarded]
    assert parse(*pairs).headers == {"Content-Type": ["application/json"]}


def test_headers_that_configure_nothing_are_ignored() -> None:
    o = parse(
        ("Authorization", "Bearer token"),
        ("Upstash-Telemetry-Sdk", "upstash-qstash-js@v2"),
        ("Upstash-Telemetry-Runtime", "node"),
        ("Upstash-Workflow-Runid", "wfr_1"),
        ("Accept", "*/*"),
        ("User-Agent", "python-httpx"),
        ("Accept-Encoding", "gzip"),
    )
    assert o.headers == {}
    assert o.given == frozenset()


def test_trace_context_travels_outside_the_headers() -> None:
    o = parse(("traceparent", "00-abc-def-01"), ("TraceState", "k=v"))
    assert o.trace == {"traceparent": "00-abc-def-01", "tracestate": "k=v"}
    assert o.headers == {}


@pytest.mark.parametrize(
    "name",
    [
        "Upstash-Signature", "Upstash-Message-Id", "Upstash-Retried", "Upstash-Topic-Name",
        "Upstash-Schedule-Id", "Upstash-Caller-Ip", "upstash-signature", "Connection",
        "Transfer-Encoding", "Keep-Alive", "Upgrade", "TE", "Host", "Content-Length",
        "Proxy-Authorization",
    ],
)  # fmt: skip
def test_forwarded_headers_homing_controls_are_dropped_silently(name: str) -> None:
    # The workflow SDKs forward every header they received; the hosted service accepts them.
    o = parse((f"Upstash-Forward-{name}", "x"), ("Upstash-Forward-X-Kept", "k"))
    assert o.headers == {"X-Kept": ["k"]}
    o = parse(("Upstash-Callback", CB), (f"Upstash-Callback-Forward-{name}", "x"))
    assert o.callback is not None and o.callback.headers == {}
    o = parse(("Upstash-Failure-Callback", CB), (f"Upstash-Failure-Callback-{name}", "x"))
    assert o.failure_callback is not None and o.failure_callback.headers == {}


def test_forwarded_workflow_run_id_and_created_at_are_dropped_other_workflow_names_kept() -> None:
    o = parse(
        ("Upstash-Forward-Upstash-Workflow-RunId", "wfr_forged"),
        ("Upstash-Forward-Upstash-Workflow-CreatedAt", "1"),
        ("Upstash-Forward-Upstash-Workflow-Sdk-Version", "1"),
    )
    assert o.headers == {"Upstash-Workflow-Sdk-Version": ["1"]}


def test_callback_configuration_without_its_url_is_ignored() -> None:
    o = parse(
        ("Upstash-Failure-Callback-Forward-X-User", "u"),
        ("Upstash-Failure-Callback-Retries", "3"),
        ("Upstash-Callback-Workflow-RunId", "wfr_1"),
    )
    assert (o.callback, o.failure_callback) == (None, None)


def test_workflow_headers_of_a_callback_configure_it_and_are_not_forwarded() -> None:
    o = parse(
        ("Upstash-Callback", CB),
        ("Upstash-Callback-Workflow-RunId", "wfr_1"),
        ("Upstash-Callback-Workflow-CallType", "fromCallback"),
        ("Upstash-Callback-Feature-Set", "LazyFetch,InitialBody"),
        ("Upstash-Callback-Failure-Callback-Forward-X", "f"),
        ("Upstash-Callback-Forward-Upstash-Workflow-StepId", "1"),
    )
    assert o.callback is not None
    assert o.callback.headers == {"Upstash-Workflow-Stepid": ["1"]}
    assert o.callback.control == {
        "upstash-workflow-runid": "wfr_1",
        "upstash-workflow-calltype": "fromCallback",
        "upstash-feature-set": "LazyFetch,InitialBody",
        "upstash-failure-callback-forward-x": "f",
    }


def test_other_upstash_names_may_be_forwarded() -> None:
    o = parse(("Upstash-Forward-Upstash-Workflow-Id", "wf_1"))
    assert o.headers == {"Upstash-Workflow-Id": ["wf_1"]}


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb", "a\rb", "a\x00b"])
def test_control_characters_in_values_are_refused(value: str) -> None:
    refused(("Upstash-Forward-X", value))
    refused(("Content-Type", value))
    refused(("Upstash-Callback", CB), ("Upstash-Callback-Forward-X", value))


def test_invalid_forwarded_header_names_are_refused() -> None:
    refused(("Upstash-Forward-", "x"))
    refused(("Upstash-Forward-Bad Name", "x"))
    refused(("Upstash-Forward-Bad:Name", "x"))


def test_webhook_mode_forwards_plain_headers_except_connection_level_ones() -> None:
    o = parse(
        ("Upstash-Header-Forward", "True"),
        ("X-Github-Event", "push"),
        ("content-type", "application/json"),
        ("Authorization", "Bearer secret"),
        ("Host", "homing.local"),
        ("Connection", "keep-alive"),
        ("Content-Length", "12"),
        ("Transfer-Encoding", "chunked"),
        ("Upstash-Signature", "forged"),
        ("Upstash-Message-Id", "msg_forged"),
    )
    assert o.headers == {"X-Github-Event": ["push"], "Content-Type": ["application/json"]}


def test_without_webhook_mode_plain_headers_are_not_forwarded() -> None:
    assert parse(("Upstash-Header-Forward", "false"), ("X-Github-Event", "push")).headers == {}


# -- booleans ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("True", True), ("true", True), ("TRUE", True), ("False", False), ("false", False)],
)
def test_booleans_accept_python_and_js_spellings(value: str, expected: bool) -> None:
    assert parse(("Upstash-Content-Based-Deduplication", value)).content_dedup is expected
    webhook = parse(("Upstash-Header-Forward", value), ("X-A", "1"))
    assert (webhook.headers == {"X-A": ["1"]}) is expected


def test_a_boolean_must_be_a_boolean() -> None:
    refused(("Upstash-Content-Based-Deduplication", "maybe"))
    refused(("Upstash-Header-Forward", "yes please"))


# -- retries, delays, timeouts ----------------------------------------------------------------


def test_retries_range_from_zero_to_the_configured_maximum() -> None:
    assert parse(("Upstash-Retries", "0")).max_retries == 0
    assert parse(("Upstash-Retries", "20")).max_retries == 20
    refused(("Upstash-Retries", "21"))
    refused(("Upstash-Retries", "-1"))
    refused(("Upstash-Retries", "2.5"))
    assert parse(("Upstash-Retries", "5"), limits=Limits(max_retries=5)).max_retries == 5
    with pytest.raises(InvalidRequest):
        parse(("Upstash-Retries", "6"), limits=Limits(max_retries=5))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("50s", 50),
        ("1m", 60),
        ("1h30m3s", 5403),
        ("10d", 864000),
        ("100", 100),
        ("1d10h30m", 124200),
    ],
)
def test_delay_is_a_duration(value: str, seconds: int) -> None:
    assert parse(("Upstash-Delay", value)).delay_s == seconds


@pytest.mark.parametrize("value", ["soon", "1x", "-5s", "1.5h", "s", ""])
def test_invalid_delay_is_refused(value: str) -> None:
    refused(("Upstash-Delay", value))


def test_delay_above_the_maximum_is_refused() -> None:
    refused(("Upstash-Delay", "366d"))
    assert parse(("Upstash-Delay", "365d")).delay_s == 365 * 86400


def test_not_before_is_unix_seconds() -> None:
    o = parse(("Upstash-Not-Before", "1800000000"), ("Upstash-Delay", "1h"))
    assert (o.not_before_s, o.delay_s) == (1_800_000_000, 3600)
    refused(("Upstash-Not-Before", "tomorrow"))


def test_timeout_is_clamped_to_the_maximum() -> None:
    assert parse(("Upstash-Timeout", "30s")).timeout_s == 30
    assert parse(("Upstash-Timeout", "1d")).timeout_s == Limits().max_timeout_s
    refused(("Upstash-Timeout", "forever"))


def test_retry_delay_expression_is_validated_and_kept_verbatim() -> None:
    o = parse(("Upstash-Retry-Delay", "pow(2, retried) * 1000"))
    assert o.retry_delay is not None and o.retry_delay.text == "pow(2, retried) * 1000"
    refused(("Upstash-Retry-Delay", "pow(2,"))
    refused(("Upstash-Retry-Delay", "attempts * 1000"))


# -- labels, dedup, redaction -----------------------------------------------------------------


def test_labels_are_a_comma_separated_list() -> None:
    assert parse(("Upstash-Label", "billing")).labels == ("billing",)
    assert parse(("Upstash-Label", "a,b")).labels == ("a", "b")
    assert parse(("Upstash-Label", " a , b ,")).labels == ("a", "b")


def test_deduplication_id() -> None:
    assert parse(("Upstash-Deduplication-Id", "order-7")).dedup_id == "order-7"
    refused(("Upstash-Deduplication-Id", "  "))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("body", Redaction(body=True)),
        ("header", Redaction(all_headers=True)),
        ("headers", Redaction(all_headers=True)),
        ("body,header", Redaction(body=True, all_headers=True)),
        ("header[Authorization]", Redaction(header_names=frozenset({"authorization"}))),
        ("headers[X-Api-Key]", Redaction(header_names=frozenset({"x-api-key"}))),
        (
            "body, header[Authorization], headers[ X-Secret ]",
            Redaction(body=True, header_names=frozenset({"authorization", "x-secret"})),
        ),
        (
            "BODY,Header[authorization]",
            Redaction(body=True, header_names=frozenset({"authorization"})),
        ),
    ],
)
def test_redaction_forms(value: str, expected: Redaction) -> None:
    assert parse(("Upstash-Redact-Fields", value)).redact == expected


def test_redaction_of_a_named_header_ignores_case() -> None:
    redact = parse(("Upstash-Redact-Fields", "header[authorization]")).redact
    assert redact.redacts_header("Authorization") and redact.redacts_header("AUTHORIZATION")
    assert not redact.redacts_header("X-Other")


@pytest.mark.parametrize("value", ["bodies", "header[]", "cookies", "header[a b]"])
def test_unknown_redaction_items_are_refused(value: str) -> None:
    refused(("Upstash-Redact-Fields", value))


# -- flow control -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("parallelism=3, rate=10, period=1m", (3, 10, 60)),  # as the SDKs write it
        ("parallelism=3,rate=10,period=60s", (3, 10, 60)),
        (" rate = 23 ,  period = 1h30m3s ", (None, 23, 5403)),
        ("rate=1", (None, 1, 1)),
        ("parallelism=5", (5, None, 1)),
        ("rate=2, period=1d", (None, 2, 86400)),
        ("rate=2,period=7d", (None, 2, 604800)),
        ("rate=2, period=120", (None, 2, 120)),
    ],
)
def test_flow_control_value_forms(value: str, expected: tuple[int | None, int | None, int]) -> None:
    flow = parse(("Upstash-Flow-Control-Key", "k"), ("Upstash-Flow-Control-Value", value)).flow
    assert flow is not None
    assert (flow.key, flow.parallelism, flow.rate, flow.period_s) == ("k", *expected)


@pytest.mark.parametrize(
    "headers",
    [
        [("Upstash-Flow-Control-Key", "k")],
        [("Upstash-Flow-Control-Key", "k"), ("Upstash-Flow-Control-Value", "")],
        [("Upstash-Flow-Control-Key", "k"), ("Upstash-Flow-Control-Value", "  ")],
        [("Upstash-Flow-Control-Value", "rate=1")],
        [("Upstash-Flow-Control-Key", ""), ("Upstash-Flow-Control-Value", "rate=1")],
        [("Upstash-Flow-Control-Key", "k"), ("Upstash-Flow-Control-Value", "burst=3")],
        [("Upstash-Flow-Control-Key", "k"), ("Upstash-Flow-Control-Value", "rate=abc")],
        [("Upstash-Flow-Control-Key", "k"), ("Upstash-Flow-Control-Value", "rate=0")],
        [("Upstash-Flow-Control-Key", "k"), ("Upstash-Flow-Control-Value", "rate=1;period=2")],
        [("Upstash-Flow-Control-Key", "k"), ("Upstash-Flow-Control-Value", "rate=1, period=8d")],
        [("Upstash-Flow-Control-Key", "k"), ("Upstash-Flow-Control-Value", "rate=1, period=0s")],
        [("Upstash-Flow-Control-Key", "k"), ("Upstash-Flow-Control-Value", "rate")],
    ],
)
def test_invalid_flow_control_is_refused(headers: list[tuple[str, str]]) -> None:
    refused(*headers)


# -- query parameters -------------------------------------------------------------------------


def test_query_parameters_configure_like_headers() -> None:
    o = parse(query=[("upstash-retries", "5"), ("upstash-delay", "10s"), ("upstash-method", "PUT")])
    assert (o.max_retries, o.delay_s, o.method) == (5, 10, "PUT")


def test_a_header_wins_over_the_same_query_parameter() -> None:
    o = parse(
        ("Upstash-Retries", "1"),
        ("upstash-label", "from-header"),
        query=[("upstash-retries", "5"), ("upstash-label", "from-query"), ("upstash-delay", "7s")],
    )
    assert (o.max_retries, o.labels, o.delay_s) == (1, ("from-header",), 7)


def test_query_parameters_are_validated_too() -> None:
    refused(query=[("upstash-retries", "99")])


def test_only_upstash_query_parameters_configure() -> None:
    assert parse(query=[("retries", "5"), ("method", "PUT")]) == parse()


# -- callbacks --------------------------------------------------------------------------------


def test_callback_configuration_and_forwarded_callback_headers() -> None:
    o = parse(
        ("Upstash-Callback", CB),
        ("Upstash-Callback-Method", "put"),
        ("Upstash-Callback-Retries", "2"),
        ("Upstash-Callback-Retry-Delay", "100"),
        ("Upstash-Callback-Timeout", "30s"),
        ("Upstash-Callback-Delay", "5s"),
        ("Upstash-Callback-X-Token", "t"),  # Python's callback_headers={"X-Token": ...}
        ("Upstash-Callback-Forward-X-Other", "o"),  # the documented form
    )
    cb = o.callback
    assert cb is not None
    assert (cb.url, cb.method, cb.retries, cb.retry_delay, cb.timeout_s, cb.delay_s) == (
        CB, "PUT", 2, "100", 30, 5,
    )  # fmt: skip
    assert cb.headers == {"X-Token": ["t"], "X-Other": ["o"]}
    assert o.failure_callback is None
    assert o.headers == {}  # callback headers never reach the destination
    assert "callback" in o.given


def test_callback_defaults() -> None:
    cb = parse(("Upstash-Callback", CB)).callback
    assert cb is not None
    assert (cb.method, cb.retries, cb.retry_delay, cb.timeout_s, cb.delay_s, cb.headers) == (
        "POST", None, None, None, None, {},
    )  # fmt: skip


def test_failure_callback_is_configured_separately() -> None:
    o = parse(
        ("Upstash-Callback", CB),
        ("Upstash-Callback-X-A", "a"),
        ("Upstash-Failure-Callback", CB + "/failed"),
        ("Upstash-Failure-Callback-Method", "PATCH"),
        ("Upstash-Failure-Callback-Retries", "0"),
        ("Upstash-Failure-Callback-X-B", "b"),
        ("Upstash-Failure-Callback-Forward-X-C", "c"),
    )
    assert o.callback is not None and o.failure_callback is not None
    assert o.callback.headers == {"X-A": ["a"]}
    assert (o.callback.method, o.callback.retries) == ("POST", None)
    fcb = o.failure_callback
    assert (fcb.url, fcb.method, fcb.retries) == (CB + "/failed", "PATCH", 0)
    assert fcb.headers == {"X-B": ["b"], "X-C": ["c"]}


@pytest.mark.parametrize("url", ["not-a-url", "ftp://example.com/cb", "http://", "/relative"])
def test_callback_must_be_an_absolute_http_url(url: str) -> None:
    refused(("Upstash-Callback", url))
    refused(("Upstash-Failure-Callback", url))


def test_invalid_callback_configuration_is_refused() -> None:
    refused(("Upstash-Callback", CB), ("Upstash-Callback-Method", "TRACE"))
    refused(("Upstash-Callback", CB), ("Upstash-Callback-Retries", "99"))
    refused(("Upstash-Callback", CB), ("Upstash-Callback-Retry-Delay", "pow("))
    refused(("Upstash-Callback", CB), ("Upstash-Callback-Timeout", "never"))
    refused(("Upstash-Failure-Callback", CB), ("Upstash-Failure-Callback-Delay", "later"))


def test_a_callback_delay_beyond_the_maximum_delay_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="callback delay exceeds"):
        parse_options(
            [("Upstash-Callback", "https://cb.example/x"), ("Upstash-Callback-Delay", "400d")]
        )
