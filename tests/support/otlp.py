"""A tiny OTLP/HTTP trace collector on a loopback port: it decodes what exporters POST to
`/v1/traces` (protobuf, as OpenTelemetry's `OTLPSpanExporter` sends it) and keeps the spans."""

from __future__ import annotations

import gzip
import http.server
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ExportedSpan:
    name: str
    kind: int  # the OTLP enum: 2 SERVER, 3 CLIENT
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root span
    start_ns: int
    end_ns: int
    status_code: int  # the OTLP enum: 0 UNSET, 1 OK, 2 ERROR
    status_message: str
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""


SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
STATUS_CODE_ERROR = 2


def _value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if which == "kvlist_value":
        return _attributes(any_value.kvlist_value.values)
    return getattr(any_value, which)


def _attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


def decode(body: bytes) -> list[ExportedSpan]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[ExportedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                spans.append(
                    ExportedSpan(
                        name=s.name,
                        kind=s.kind,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        status_code=s.status.code,
                        status_message=s.status.message,
                        attributes=_attributes(s.attributes),
                        resource=resource,
                        scope=scope_spans.scope.name,
                    )
                )
    return spans


class OtlpCollector:
    """`collector.url` is the OTLP/HTTP traces endpoint; `collector.spans` what arrived."""

    def __init__(self) -> None:
        self.spans: list[ExportedSpan] = []
        self.requests = 0
        self.errors: list[str] = []
        self._changed = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                status = 200
                try:
                    if self.path.split("?")[0] != "/v1/traces":
                        raise ValueError(f"unexpected path {self.path}")
                    if encoding == "gzip":
                        body = gzip.decompress(body)
                    elif encoding == "deflate":
                        body = zlib.decompress(body)
                    spans = decode(body)
                except Exception as exc:  # a test asserts on `errors`
                    spans = []
                    status = 400
                    with outer._changed:
                        outer.errors.append(f"{type(exc).__name__}: {exc}")
                with outer._changed:
                    outer.requests += 1
                    outer.spans.extend(spans)
                    outer._changed.notify_all()
                # An empty ExportTraceServiceResponse is zero bytes of protobuf.
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1/traces"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def named(self, name: str) -> list[ExportedSpan]:
        with self._changed:
            return [s for s in self.spans if s.name == name]

    def wait_until(
        self, done: Callable[[list[ExportedSpan]], bool], timeout: float = 15.0
    ) -> list[ExportedSpan]:
        """Block until `done(spans)` holds; return the spans (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done(list(self.spans)):
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [(s.name, s.attributes.get("homing.attempt")) for s in self.spans]
                    raise AssertionError(
                        f"the collector got {self.requests} exports with spans {got} "
                        f"(errors: {self.errors})"
                    )
                self._changed.wait(left)
            return list(self.spans)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
