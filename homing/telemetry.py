"""Optional OpenTelemetry export: one span per publish and one per delivery attempt.

Off unless `--otel-endpoint` (`HOMING_OTEL_ENDPOINT`) names an OTLP/HTTP traces URL, e.g.
`http://127.0.0.1:4318/v1/traces`. OpenTelemetry is an extra (`pip install 'homing[otel]'`) and
is imported only by `Telemetry.from_settings` when an endpoint is set: a server without tracing
neither needs it nor pays its import.

The shape of a trace:

    publisher's span (the `traceparent` received with the publish)
    ├── homing.publish   SERVER  the publish request: validation and the durable insert
    ├── homing.deliver   CLIENT  attempt 1 (e.g. 500, homing.outcome=retry)
    └── homing.deliver   CLIENT  attempt 2 (200, homing.outcome=delivered)

Both kinds of span are children of the publisher's span, taken from the `traceparent` /
`tracestate` stored with the message, so publish, every attempt and every callback share the
publisher's trace id. The attempts are siblings of `homing.publish`, not its children: the
destination is sent the stored `traceparent` unchanged, so the receiving app continues the
publisher's trace under the publisher's span (it does not see Homing's span ids). Without an
incoming `traceparent` each span is the root of a trace of its own; they are then tied together by
`messaging.message.id`. The publisher's sampling decision is respected: a `traceparent` whose
sampled flag is off yields no spans (`OTEL_TRACES_SAMPLER` and the other `OTEL_*` variables of the
SDK apply as usual).

Destinations are recorded by host and port only (`server.address`, `server.port`), never by path
or query: webhook URLs often carry their secret there (Slack, Discord, signed URLs), and a tracing
backend is usually read by more people than the Homing console is.

Spans are recorded after the fact with explicit start and end times (wall clock,
`time.time_ns()`), so the hot paths build one span and one attribute dict per call; export runs in
the SDK's batch thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from homing import __version__
from homing.errors import InvalidRequest

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.util.types import AttributeValue

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'homing[otel]'"
_REQUIRED = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")
_OUTCOMES = {"failed": "dead_lettered"}  # OutcomeKind.FAILED: the message went to the DLQ
_MAX_DESCRIPTION = 256


def endpoint_problem(endpoint: str) -> str | None:
    """Why spans cannot be exported to `endpoint`, or None if they can. Finds the OpenTelemetry
    modules without importing them, so the CLI can refuse a bad `--otel-endpoint` at once."""
    import importlib.util

    if not endpoint.lower().startswith(("http://", "https://")):
        return (
            "--otel-endpoint must be an http:// or https:// URL (the OTLP/HTTP traces URL, "
            f"e.g. http://127.0.0.1:4318/v1/traces), not {endpoint!r}"
        )
    for module in _REQUIRED:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ModuleNotFoundError, ValueError):
            found = False
        if not found:
            return (
                f"--otel-endpoint needs OpenTelemetry ({module} is not installed): {INSTALL_HINT}"
            )
    return None


class Telemetry:
    """Records spans on a `TracerProvider` of its own (never the global one)."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.context import Context
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self._tracer = provider.get_tracer("homing", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._root = Context()  # no parent: a new trace (never the ambient context)
        self._server = SpanKind.SERVER
        self._client = SpanKind.CLIENT
        self._status = Status
        self._error = StatusCode.ERROR
        self._warned = False

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_settings(
        cls, endpoint: str | None, service_name: str = "homing", *, node_id: str = ""
    ) -> Telemetry | None:
        """None when `endpoint` is unset; else export to it over OTLP/HTTP (protobuf), batched.

        Raises `InvalidRequest` when the endpoint is not an http(s) URL or OpenTelemetry is not
        installed."""
        if not endpoint:
            return None
        problem = endpoint_problem(endpoint)
        if problem is not None:
            raise InvalidRequest(problem)
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise InvalidRequest(
                f"--otel-endpoint needs OpenTelemetry, which cannot be imported ({exc}): "
                f"{INSTALL_HINT}"
            ) from None

        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
        return cls._build(processor, service_name, node_id)

    @classmethod
    def for_exporter(
        cls, exporter: SpanExporter, service_name: str = "homing", *, node_id: str = ""
    ) -> Telemetry:
        """Export each span synchronously to `exporter` as it ends (tests: InMemorySpanExporter)."""
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        return cls._build(SimpleSpanProcessor(exporter), service_name, node_id)

    @classmethod
    def _build(cls, processor: SpanProcessor, service_name: str, node_id: str) -> Telemetry:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        attributes: dict[str, AttributeValue] = {
            "service.name": service_name,
            "service.version": __version__,
        }
        if node_id:
            attributes["service.instance.id"] = node_id
        # shutdown_on_exit=False: `aclose` flushes, bounded; an atexit hook could hold the
        # process for the exporter's whole timeout when the collector is down.
        provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
        provider.add_span_processor(processor)
        return cls(provider)

    # -- spans ------------------------------------------------------------------------------

    def published(
        self,
        *,
        trace: dict[str, str],
        account: str,
        message_ids: list[str],
        destination: str,
        start_ns: int,
        end_ns: int,
        status: int,
    ) -> None:
        """One `homing.publish` span (SERVER) for a publish request that was answered `status`.

        `destination` is the URL or the URL-group name; `message_ids` the ids answered (one per
        endpoint of a group); times are `time.time_ns()` values."""
        try:
            attributes: dict[str, AttributeValue] = {
                "messaging.system": "homing",
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
                "homing.account": account,
                "homing.message_count": len(message_ids),
                "http.response.status_code": status,
            }
            if message_ids:
                attributes["messaging.message.id"] = message_ids[0]
            attributes.update(_destination(destination))
            span = self._tracer.start_span(
                "homing.publish",
                context=self._parent(trace),
                kind=self._server,
                attributes=attributes,
                start_time=start_ns,
            )
            if status >= 500:
                span.set_attribute("error.type", str(status))
                span.set_status(self._status(self._error, f"HTTP {status}"))
            span.end(end_time=end_ns)
        except Exception:  # tracing must never fail a publish that is already stored
            self._warn_once()

    def attempt(
        self,
        *,
        trace: dict[str, str],
        message_id: str,
        account: str,
        url: str,
        attempt: int,
        start_ns: int,
        end_ns: int,
        status: int | None,
        error: str | None,
        outcome: str,
        kind: str = "message",
    ) -> None:
        """One `homing.deliver` span (CLIENT) for a delivery attempt that has finished.

        `attempt` counts from 1 (it is `Upstash-Retried` + 1); `status` is the HTTP status, None
        or 0 when no answer came (then `error` says why); `outcome` is what follows: "delivered",
        "retry" or "failed" (recorded as "dead_lettered"); `kind` is "message", "callback" or
        "failure_callback"."""
        try:
            attributes: dict[str, AttributeValue] = {
                "messaging.system": "homing",
                "messaging.operation.name": "deliver",
                "messaging.message.id": message_id,
                "homing.account": account,
                "homing.attempt": attempt,
                "homing.outcome": _OUTCOMES.get(str(outcome), str(outcome)),
                "homing.message.kind": str(kind),
            }
            attributes.update(_destination(url))
            if status:
                attributes["http.response.status_code"] = status
            span = self._tracer.start_span(
                "homing.deliver",
                context=self._parent(trace),
                kind=self._client,
                attributes=attributes,
                start_time=start_ns,
            )
            if error is not None or not status or not 200 <= status < 300:
                span.set_attribute("error.type", str(status) if status else "no_response")
                description = error or f"HTTP {status}"
                span.set_status(self._status(self._error, description[:_MAX_DESCRIPTION]))
            span.end(end_time=end_ns)
        except Exception:  # tracing must never fail an attempt
            self._warn_once()

    def _parent(self, trace: Mapping[str, str]) -> Context:
        if not trace.get("traceparent"):
            return self._root
        # An invalid traceparent extracts to the empty context: a new root, no exception.
        return self._propagator.extract(trace, context=self._root)

    def _warn_once(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "could not record a span; tracing goes on", exc_info=True,
                extra={"event": "telemetry.failed"},
            )  # fmt: skip

    # -- shutdown ---------------------------------------------------------------------------

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Flush the spans still queued and stop exporting, waiting at most `timeout_s`.

        The SDK's shutdown blocks (it joins the export thread, up to 30 s when the collector is
        down), so it runs in a daemon thread of its own: neither the event loop nor the exit of
        the process (which joins the default executor's threads) waits on it for longer."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        def run() -> None:
            try:
                self.provider.shutdown()
            except Exception:
                log.warning("tracing shutdown failed", exc_info=True)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is closed already
                    loop.call_soon_threadsafe(finished)

        threading.Thread(target=run, name="homing-otel-shutdown", daemon=True).start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done, timeout_s)


@functools.lru_cache(maxsize=4096)
def _destination(destination: str) -> dict[str, AttributeValue]:
    """`server.address` / `server.port` of a URL (never its path or query), or the URL-group name.

    Cached: a busy server sends to few distinct URLs. Callers copy from the result."""
    if not destination.lower().startswith(("http://", "https://")):
        return {"messaging.destination.name": destination} if destination else {}
    try:
        parts = urlsplit(destination)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        return {}
    if not host:
        return {}
    return {"url.scheme": parts.scheme.lower(), "server.address": host, "server.port": port}
