"""homing.telemetry: the spans of publishes and attempts, recorded into an in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from homing.cli import build_parser, settings_from_args
from homing.errors import InvalidRequest
from homing.telemetry import Telemetry, endpoint_problem

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_ID = 0x00F067AA0BA902B7
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE = {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
T0 = 1_800_000_000_000_000_000  # explicit times, in ns since the epoch


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def telemetry(exporter: InMemorySpanExporter) -> Iterator[Telemetry]:
    t = Telemetry.for_exporter(exporter, node_id="node_abc")
    yield t
    t.provider.shutdown()


def publish(telemetry: Telemetry, **overrides: object) -> None:
    args: dict[str, object] = {
        "trace": TRACE,
        "account": "acct_1",
        "message_ids": ["msg_1", "msg_2"],
        "destination": "https://hooks.example.com:8443/services/T0/B0/secret?token=s3cret",
        "start_ns": T0,
        "end_ns": T0 + 3_000_000,
        "status": 201,
    }
    args.update(overrides)
    telemetry.published(**args)  # type: ignore[arg-type]


def attempt(telemetry: Telemetry, **overrides: object) -> None:
    args: dict[str, object] = {
        "trace": TRACE,
        "message_id": "msg_1",
        "account": "acct_1",
        "url": "https://hooks.example.com/services/T0/B0/secret?token=s3cret",
        "attempt": 1,
        "start_ns": T0 + 10_000_000,
        "end_ns": T0 + 25_000_000,
        "status": 200,
        "error": None,
        "outcome": "delivered",
    }
    args.update(overrides)
    telemetry.attempt(**args)  # type: ignore[arg-type]


def only(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1, spans
    return spans[0]


def _no_secret(span: ReadableSpan) -> None:
    for value in (span.attributes or {}).values():
        assert "secret" not in str(value) and "/services" not in str(value)


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", [None, ""])
def test_no_endpoint_means_no_telemetry(endpoint: str | None) -> None:
    assert Telemetry.from_settings(endpoint) is None


def test_an_endpoint_that_is_not_an_http_url_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="http:// or https://"):
        Telemetry.from_settings("127.0.0.1:4318")


def test_without_opentelemetry_installed_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http", None)
    with pytest.raises(InvalidRequest, match=r"pip install 'homing\[otel\]'"):
        Telemetry.from_settings("http://127.0.0.1:4318/v1/traces")
    problem = endpoint_problem("http://127.0.0.1:4318/v1/traces")
    assert problem is not None and "homing[otel]" in problem


async def test_from_settings_builds_its_own_provider_with_the_node_as_resource() -> None:
    telemetry = Telemetry.from_settings(
        "http://127.0.0.1:9/v1/traces", service_name="homing-test", node_id="node_1"
    )
    assert telemetry is not None
    try:
        resource = telemetry.provider.resource.attributes
        assert resource["service.name"] == "homing-test"
        assert resource["service.instance.id"] == "node_1"
        # The global provider is left alone: the app's own OpenTelemetry setup is not ours.
        assert trace_api.get_tracer_provider() is not telemetry.provider
    finally:
        await telemetry.aclose(timeout_s=5)


def test_the_cli_option_and_its_environment_variable() -> None:
    args = build_parser({}).parse_args(["dev"])
    assert settings_from_args(args).otel_endpoint is None
    url = "http://collector:4318/v1/traces"
    args = build_parser({"HOMING_OTEL_ENDPOINT": url}).parse_args(["dev"])
    assert settings_from_args(args).otel_endpoint == url
    args = build_parser({}).parse_args(["dev", "--otel-endpoint", url])
    assert settings_from_args(args).otel_endpoint == url


def test_the_cli_refuses_the_option_without_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    args = build_parser({}).parse_args(["dev", "--otel-endpoint", "http://c:4318/v1/traces"])
    with pytest.raises(SystemExit, match=r"homing\[otel\]"):
        settings_from_args(args)


def test_importing_homing_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, homing.telemetry, homing.cli, homing.api.app\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
        "'opentelemetry.exporter', 'opentelemetry.proto', 'google.protobuf'))]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- the publish span ------------------------------------------------------------------------


def test_publish_span_continues_the_publishers_trace(
    telemetry: Telemetry, exporter: InMemorySpanExporter
) -> None:
    publish(telemetry)
    span = only(exporter)
    assert span.name == "homing.publish"
    assert span.kind is SpanKind.SERVER
    assert span.context is not None and span.parent is not None
    assert span.context.trace_id == TRACE_ID
    assert span.parent.span_id == PARENT_ID
    assert span.parent.is_remote
    assert span.context.trace_state.get("vendor") == "1"
    assert (span.start_time, span.end_time) == (T0, T0 + 3_000_000)
    assert dict(span.attributes or {}) == {
        "messaging.system": "homing",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "homing.account": "acct_1",
        "homing.message_count": 2,
        "messaging.message.id": "msg_1",
        "http.response.status_code": 201,
        "url.scheme": "https",
        "server.address": "hooks.example.com",
        "server.port": 8443,
    }
    assert span.status.status_code is StatusCode.UNSET
    assert span.resource.attributes["service.name"] == "homing"
    assert span.resource.attributes["service.instance.id"] == "node_abc"
    _no_secret(span)


def test_publish_to_a_url_group_names_the_group(
    telemetry: Telemetry, exporter: InMemorySpanExporter
) -> None:
    publish(telemetry, destination="user-events", status=202)
    attributes = only(exporter).attributes or {}
    assert attributes["messaging.destination.name"] == "user-events"
    assert "server.address" not in attributes
    assert attributes["http.response.status_code"] == 202


def test_a_failed_publish_is_an_error_span(
    telemetry: Telemetry, exporter: InMemorySpanExporter
) -> None:
    publish(telemetry, status=503, message_ids=[])
    span = only(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "HTTP 503"
    assert "messaging.message.id" not in (span.attributes or {})


# -- the attempt spans -----------------------------------------------------------------------


def test_attempt_span_is_a_client_span_in_the_publishers_trace(
    telemetry: Telemetry, exporter: InMemorySpanExporter
) -> None:
    attempt(telemetry)
    span = only(exporter)
    assert span.name == "homing.deliver"
    assert span.kind is SpanKind.CLIENT
    assert span.context is not None and span.parent is not None
    assert span.context.trace_id == TRACE_ID
    assert span.parent.span_id == PARENT_ID
    assert (span.start_time, span.end_time) == (T0 + 10_000_000, T0 + 25_000_000)
    assert dict(span.attributes or {}) == {
        "messaging.system": "homing",
        "messaging.operation.name": "deliver",
        "messaging.message.id": "msg_1",
        "homing.account": "acct_1",
        "homing.attempt": 1,
        "homing.outcome": "delivered",
        "homing.message.kind": "message",
        "http.response.status_code": 200,
        "url.scheme": "https",
        "server.address": "hooks.example.com",
        "server.port": 443,
    }
    assert span.status.status_code is StatusCode.UNSET
    _no_secret(span)


def test_publish_and_every_attempt_share_the_trace(
    telemetry: Telemetry, exporter: InMemorySpanExporter
) -> None:
    publish(telemetry)
    attempt(telemetry, attempt=1, status=500, outcome="retry")
    attempt(telemetry, attempt=2, status=200, outcome="delivered")
    attempt(telemetry, attempt=1, message_id="msg_3", kind="callback", url="http://127.0.0.1/cb")
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["homing.publish"] + ["homing.deliver"] * 3
    assert {s.context.trace_id for s in spans if s.context} == {TRACE_ID}
    assert len({s.context.span_id for s in spans if s.context}) == 4
    assert (spans[3].attributes or {})["homing.message.kind"] == "callback"
    assert (spans[3].attributes or {})["server.port"] == 80


def test_a_non_2xx_answer_is_an_error(telemetry: Telemetry, exporter: InMemorySpanExporter) -> None:
    attempt(telemetry, status=500, outcome="retry", attempt=2)
    span = only(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "HTTP 500"
    attributes = span.attributes or {}
    assert attributes["error.type"] == "500"
    assert attributes["homing.outcome"] == "retry"
    assert attributes["homing.attempt"] == 2


@pytest.mark.parametrize("status", [None, 0])
def test_no_answer_is_an_error_with_the_transport_error(
    telemetry: Telemetry, exporter: InMemorySpanExporter, status: int | None
) -> None:
    attempt(telemetry, status=status, error="timed out after 15 s", outcome="failed")
    span = only(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "timed out after 15 s"
    attributes = span.attributes or {}
    assert "http.response.status_code" not in attributes
    assert attributes["error.type"] == "no_response"
    assert attributes["homing.outcome"] == "dead_lettered"


def test_a_long_error_is_cut(telemetry: Telemetry, exporter: InMemorySpanExporter) -> None:
    attempt(telemetry, status=0, error="x" * 10_000, outcome="retry")
    description = only(exporter).status.description
    assert description is not None and len(description) == 256


# -- trace context edge cases ----------------------------------------------------------------


def test_without_traceparent_each_span_is_a_new_root(
    telemetry: Telemetry, exporter: InMemorySpanExporter
) -> None:
    publish(telemetry, trace={})
    attempt(telemetry, trace={})
    attempt(telemetry, trace={"tracestate": "vendor=1"})
    spans = exporter.get_finished_spans()
    assert len(spans) == 3
    assert all(s.parent is None for s in spans)
    assert len({s.context.trace_id for s in spans if s.context}) == 3


@pytest.mark.parametrize(
    "traceparent",
    [
        "garbage",
        "00-abc-def-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nInjected: 1",
        "0" * 10_000,
        "",
    ],
)
def test_a_garbage_traceparent_starts_a_new_root(
    telemetry: Telemetry, exporter: InMemorySpanExporter, traceparent: str
) -> None:
    publish(telemetry, trace={"traceparent": traceparent, "tracestate": "=,=="})
    attempt(telemetry, trace={"traceparent": traceparent})
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    assert all(s.parent is None for s in spans)
    assert all(s.context is not None and s.context.trace_id != TRACE_ID for s in spans)


def test_the_publishers_sampling_decision_is_respected(
    telemetry: Telemetry, exporter: InMemorySpanExporter
) -> None:
    unsampled = {"traceparent": TRACEPARENT[:-2] + "00"}
    publish(telemetry, trace=unsampled)
    attempt(telemetry, trace=unsampled)
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize(
    "url", ["http://[::1", "https://example.com:99999/", "http:///nohost", "https://"]
)
def test_an_odd_destination_still_gives_a_span(
    telemetry: Telemetry, exporter: InMemorySpanExporter, url: str
) -> None:
    attempt(telemetry, url=url)
    attributes = only(exporter).attributes or {}
    assert "server.address" not in attributes
    assert attributes["messaging.message.id"] == "msg_1"


# -- shutdown --------------------------------------------------------------------------------


async def test_aclose_flushes_and_stops_recording(exporter: InMemorySpanExporter) -> None:
    telemetry = Telemetry.for_exporter(exporter)
    attempt(telemetry)
    await telemetry.aclose()
    attempt(telemetry)  # after shutdown: dropped, no exception
    assert len(exporter.get_finished_spans()) == 1


class StuckExporter(SpanExporter):
    """An exporter whose shutdown hangs, like one whose collector does not answer."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.wait(30)


async def test_aclose_waits_a_bounded_time_for_a_stuck_exporter() -> None:
    exporter = StuckExporter()
    telemetry = Telemetry.for_exporter(exporter)
    started = time.monotonic()
    await telemetry.aclose(timeout_s=0.2)
    assert time.monotonic() - started < 2
    exporter.release.set()
