"""How models become column values and back, shared by every backend.

The delivery spec and responses are stored as compact JSON documents: they are read whole by the
engine and never queried, so one column beats a dozen.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson

from homing.models import (
    CallbackSpec,
    DeliverySpec,
    FlowControl,
    Invoker,
    MessageKind,
    MessageState,
    Redaction,
    Response,
    Run,
    RunConfig,
    RunState,
    RunStep,
    Schedule,
    ScheduleState,
    WorkflowTag,
)
from homing.publish import Endpoint


def hash_token(token: str) -> str:
    """What is stored of a token: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_id(digest: str) -> str:
    """A token's public id (shown by `homing tokens list`, used to revoke it): from its hash,
    so the same token has the same id on every node and backend."""
    return "tok_" + digest[:16]


def _callback_doc(cb: CallbackSpec | None) -> dict[str, Any] | None:
    if cb is None:
        return None
    doc: dict[str, Any] = {
        "url": cb.url,
        "headers": cb.headers,
        "method": cb.method,
        "retries": cb.retries,
        "retry_delay": cb.retry_delay,
        "timeout_s": cb.timeout_s,
        "delay_s": cb.delay_s,
    }
    if cb.control:
        doc["control"] = cb.control
    if cb.workflow is not None:
        doc["workflow"] = _workflow_doc(cb.workflow)
    return doc


def _callback(doc: dict[str, Any] | None) -> CallbackSpec | None:
    if doc is None:
        return None
    workflow = doc.pop("workflow", None)
    return CallbackSpec(**doc, workflow=_workflow(workflow))


def encode_spec(spec: DeliverySpec) -> bytes:
    doc: dict[str, Any] = {"m": spec.method, "h": spec.headers, "r": spec.max_retries}
    if spec.retry_delay is not None:
        doc["rd"] = spec.retry_delay
    if spec.timeout_s is not None:
        doc["t"] = spec.timeout_s
    if spec.callback is not None:
        doc["cb"] = _callback_doc(spec.callback)
    if spec.failure_callback is not None:
        doc["fcb"] = _callback_doc(spec.failure_callback)
    if spec.redact.any:
        doc["red"] = [spec.redact.body, spec.redact.all_headers, sorted(spec.redact.header_names)]
    if spec.trace:
        doc["tr"] = spec.trace
    if spec.kind is not MessageKind.MESSAGE:
        doc["k"] = spec.kind.value
    if spec.workflow is not None:
        doc["wf"] = _workflow_doc(spec.workflow)
    return orjson.dumps(doc)


def _workflow_doc(tag: WorkflowTag) -> list[Any]:
    return [tag.run_id, tag.created_ms, tag.call_type, tag.init, tag.detect_trigger, tag.step_list]


def _workflow(doc: list[Any] | None) -> WorkflowTag | None:
    return None if doc is None else WorkflowTag(*doc)


def decode_spec(raw: bytes | str) -> DeliverySpec:
    doc = orjson.loads(raw)
    red = doc.get("red")
    return DeliverySpec(
        method=doc["m"],
        headers=doc["h"],
        max_retries=doc["r"],
        retry_delay=doc.get("rd"),
        timeout_s=doc.get("t"),
        callback=_callback(doc.get("cb")),
        failure_callback=_callback(doc.get("fcb")),
        redact=Redaction(red[0], red[1], frozenset(red[2])) if red else Redaction(),
        trace=doc.get("tr") or {},
        kind=MessageKind(doc.get("k", "message")),
        workflow=_workflow(doc.get("wf")),
    )


def encode_response(response: Response | None) -> bytes | None:
    if response is None:
        return None
    return orjson.dumps(
        {
            "s": response.status,
            "h": response.headers,
            "b": base64.b64encode(response.body).decode(),
            "e": response.error,
        }
    )


def decode_response(raw: bytes | str | None) -> Response | None:
    if raw is None:
        return None
    doc = orjson.loads(raw)
    return Response(
        status=doc["s"], headers=doc["h"], body=base64.b64decode(doc["b"]), error=doc["e"]
    )


def encode_flow(flow: FlowControl | None) -> str | None:
    if flow is None:
        return None
    return orjson.dumps([flow.parallelism, flow.rate, flow.period_s]).decode()


def decode_flow(key: str | None, raw: str | None) -> FlowControl | None:
    if key is None or raw is None:
        return None
    parallelism, rate, period = orjson.loads(raw)
    return FlowControl(key=key, parallelism=parallelism, rate=rate, period_s=period)


def url_parts(url: str) -> tuple[str, str]:
    """(host, path) of a destination, for the `host` and `path` filters of logs and the DLQ."""
    try:
        parts = urlsplit(url)
        return (parts.hostname or "", parts.path or "/")
    except ValueError:
        return ("", "")


def encode_endpoints(endpoints: Iterable[Endpoint]) -> str:
    """A URL group's members as stored: `[{"url": ..., "name": ...}]`, name only when set."""
    return orjson.dumps(
        [{"url": e.url, **({"name": e.name} if e.name else {})} for e in endpoints]
    ).decode()


def decode_endpoints(raw: str | bytes) -> list[Endpoint]:
    return [Endpoint(e["url"], e.get("name")) for e in orjson.loads(raw)]


def encode_labels(labels: tuple[str, ...]) -> str | None:
    return orjson.dumps(labels).decode() if labels else None


def decode_labels(raw: str | None) -> tuple[str, ...]:
    return tuple(orjson.loads(raw)) if raw else ()


# What a schedule's last fire looks like from the state of one of its messages
# (`lastScheduleStates`); any other state is still IN_PROGRESS.
SCHEDULE_STATES = {
    MessageState.DELIVERED.value: ScheduleState.SUCCESS,
    MessageState.FAILED.value: ScheduleState.FAIL,
    MessageState.CANCELED.value: ScheduleState.FAIL,
}


def schedule_states(message_ids: Iterable[str], found: dict[str, str]) -> dict[str, ScheduleState]:
    """The states of a fire's messages, from `found` (message id -> message state)."""
    return {
        mid: SCHEDULE_STATES.get(found[mid], ScheduleState.IN_PROGRESS)
        for mid in message_ids
        if mid in found
    }


def decode_schedule(row: Sequence[Any], last_states: dict[str, ScheduleState]) -> Schedule:
    """A schedule from a row of the columns both backends select, in this order: id,
    account_id, cron, destination, body, spec, created_ms, caller_ip, delay_s, queue_name,
    labels, flow_key, flow, paused, last_fire_ms, next_fire_ms, last_message_ids, error,
    version."""
    return Schedule(
        id=row[0],
        account_id=row[1],
        cron=row[2],
        destination=row[3],
        body=bytes(row[4]),
        spec=decode_spec(row[5]),
        created_ms=row[6],
        caller_ip=row[7],
        delay_s=row[8],
        queue_name=row[9],
        labels=decode_labels(row[10]),
        flow=decode_flow(row[11], row[12]),
        paused=bool(row[13]),
        last_fire_ms=row[14],
        next_fire_ms=row[15],
        last_states=last_states,
        error=row[17],
        version=row[18],
    )


def encode_run_config(config: RunConfig) -> bytes:
    doc: dict[str, Any] = {"h": config.headers, "f": list(config.features)}
    if config.retries is not None:
        doc["r"] = config.retries
    if config.retry_delay is not None:
        doc["rd"] = config.retry_delay
    if config.flow is not None:
        doc["fl"] = [
            config.flow.key,
            config.flow.parallelism,
            config.flow.rate,
            config.flow.period_s,
        ]
    if config.failure_callback is not None:
        doc["fcb"] = _callback_doc(config.failure_callback)
    if config.redact.any:
        red = config.redact
        doc["red"] = [red.body, red.all_headers, sorted(red.header_names)]
    if config.invoker is not None:
        inv = config.invoker
        doc["inv"] = [inv.run_id, inv.url, inv.created_ms, inv.headers, inv.step.decode()]
    return orjson.dumps(doc)


def decode_run_config(raw: bytes | str) -> RunConfig:
    doc = orjson.loads(raw)
    red = doc.get("red")
    flow = doc.get("fl")
    inv = doc.get("inv")
    return RunConfig(
        headers=doc["h"],
        features=tuple(doc["f"]),
        retries=doc.get("r"),
        retry_delay=doc.get("rd"),
        flow=FlowControl(flow[0], flow[1], flow[2], flow[3]) if flow else None,
        failure_callback=_callback(doc.get("fcb")),
        redact=Redaction(red[0], red[1], frozenset(red[2])) if red else Redaction(),
        invoker=Invoker(inv[0], inv[1], inv[2], inv[3], inv[4].encode()) if inv else None,
    )


def decode_run(row: Sequence[Any], steps: tuple[RunStep, ...] = ()) -> Run:
    """A run from a row of the columns both backends select, in this order: seq, account_id,
    run_id, url, state, created_ms, ended_ms, payload, init_message_id, config, labels,
    caller_ip, result, failure, step_count."""
    return Run(
        account_id=row[1],
        run_id=row[2],
        url=row[3],
        state=RunState(row[4]),
        created_ms=row[5],
        ended_ms=row[6],
        payload=bytes(row[7]),
        init_message_id=row[8],
        config=decode_run_config(row[9]),
        labels=decode_labels(row[10]),
        caller_ip=row[11],
        result=None if row[12] is None else bytes(row[12]),
        failure=row[13],
        step_count=row[14],
        steps=steps,
    )


def decode_step(row: Sequence[Any]) -> RunStep:
    """A step-list entry from (position, message_id, call_type, body, created_ms)."""
    return RunStep(row[0], row[1], row[2], bytes(row[3]), row[4])
