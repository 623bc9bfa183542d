"""OpenTelemetry export end to end: a real Homing with `otel_endpoint` set sends the spans of a
publish and of each of its delivery attempts to a real OTLP/HTTP collector, all in the trace of
the publishing app."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ServerFactory
from tests.support.http import AUTH
from tests.support.otlp import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    STATUS_CODE_ERROR,
    ExportedSpan,
    OtlpCollector,
)
from tests.support.receiver import Received, Receiver, Reply

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PUBLISHER_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PUBLISHER_SPAN_ID}-01"


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpCollector]:
    for key in list(os.environ):  # the developer's own OpenTelemetry settings stay out
        if key.startswith("OTEL_"):
            monkeypatch.delenv(key)
    # Export every 50 ms rather than every 5 s (read when the server builds its processor).
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    c = OtlpCollector()
    yield c
    c.close()


def _complete(spans: list[ExportedSpan]) -> bool:
    names = [s.name for s in spans]
    return names.count("homing.publish") >= 1 and names.count("homing.deliver") >= 2


def test_publish_and_each_attempt_are_exported_in_the_publishers_trace(
    start_server: ServerFactory, receiver: Receiver, collector: OtlpCollector
) -> None:
    answered: list[Received] = []

    def fail_once(request: Received) -> Reply:
        answered.append(request)
        return Reply(status=500, body=b"busy") if len(answered) == 1 else Reply(status=200)

    receiver.on("/flaky", fail_once)
    # backoff_scale 0.01: the first retry follows after about 120 ms instead of 12 s.
    server = start_server(backoff_scale=0.01, otel_endpoint=collector.url)
    response = httpx.post(
        f"{server.base_url}/v2/publish/{receiver.url('/flaky?secret=s3cret')}",
        headers={**AUTH, "traceparent": TRACEPARENT, "tracestate": "vendor=1"},
        content=b"hello",
    )
    assert response.status_code == 201, response.text
    message_id = response.json()["messageId"]

    # Delivery itself is unchanged: the destination gets the publisher's traceparent as it was.
    first, second = receiver.wait_for(2, "/flaky")
    assert first.headers["traceparent"] == second.headers["traceparent"] == TRACEPARENT
    assert first.headers["tracestate"] == "vendor=1"

    spans = collector.wait_until(_complete)
    assert collector.errors == []
    [publish] = [s for s in spans if s.name == "homing.publish"]
    attempts = sorted(
        (s for s in spans if s.name == "homing.deliver"),
        key=lambda s: s.attributes["homing.attempt"],
    )
    assert len(attempts) == 2

    # One trace: the publishing app's, with the publisher's span as the parent of them all.
    for span in (publish, *attempts):
        assert span.trace_id == TRACE_ID
        assert span.parent_span_id == PUBLISHER_SPAN_ID
        assert span.attributes["messaging.message.id"] == message_id
        assert span.attributes["homing.account"] == "defaultUser"
        assert span.resource["service.name"] == "homing"
        assert span.resource["service.instance.id"] == server.runtime.node_id
        assert span.start_ns <= span.end_ns
        # Destinations are recorded by host and port, never with their path or query.
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["server.port"] == receiver.port
        assert not any("s3cret" in str(v) or "/flaky" in str(v) for v in span.attributes.values())
    assert len({publish.span_id, *(a.span_id for a in attempts)}) == 3

    assert publish.kind == SPAN_KIND_SERVER
    assert publish.attributes["http.response.status_code"] == 201
    assert publish.attributes["homing.message_count"] == 1

    failed, delivered = attempts
    assert [failed.kind, delivered.kind] == [SPAN_KIND_CLIENT, SPAN_KIND_CLIENT]
    assert failed.attributes["homing.attempt"] == 1
    assert failed.attributes["http.response.status_code"] == 500
    assert failed.attributes["homing.outcome"] == "retry"
    assert failed.status_code == STATUS_CODE_ERROR
    assert delivered.attributes["homing.attempt"] == 2
    assert delivered.attributes["http.response.status_code"] == 200
    assert delivered.attributes["homing.outcome"] == "delivered"
    assert delivered.status_code != STATUS_CODE_ERROR
    # The publish comes first, the retry after the failed attempt ended.
    assert publish.start_ns <= failed.start_ns
    assert failed.end_ns <= delivered.start_ns
