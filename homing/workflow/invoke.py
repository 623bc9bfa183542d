"""`context.invoke`: a run starts a child run of another workflow and receives the child's end
as an `Invoke` step. Pure: no I/O, no clock.

The invoke publish is a full init of the child (`Upstash-Workflow-Invoke: true`) whose body
wraps the child's payload with what the parent needs back: its run, its publish headers and
the step. When the child ends, the result is published to the parent as that step, with those
headers, exactly as the parent would have published it itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from homing.errors import PreconditionFailed
from homing.headers import Limits, parse_options
from homing.models import Headers, Invoker, Run, RunAppend, RunState
from homing.publish import Endpoint, build_messages
from homing.workflow import control as ctl
from homing.workflow import runs, steps

# The docs: an invoke chain "fails once it reaches a depth of 100". The count the child gets is
# the parent's plus one, so a child whose count is 100 is the 100th level: refused.
MAX_DEPTH = 100
INVOKE_COUNT_HEADER = "upstash-workflow-invoke-count"

# Headers of the parent's publish not kept for the result: the caller's credentials (the SDK
# copies its client's headers in) and what Homing recomputes.
_DROPPED = frozenset({"authorization", "content-length", "host"})


def depth(forwarded: Headers) -> int:
    """The invoke count a child receives (`Upstash-Forward-Upstash-Workflow-Invoke-Count`)."""
    for name, values in forwarded.items():
        if name.lower() == INVOKE_COUNT_HEADER and values:
            try:
                return int(values[0].strip())
            except ValueError:
                return 0
    return 0


def read_request(body: bytes, forwarded: Headers) -> tuple[Invoker, bytes]:
    """The invoker and the child's initial payload of an invoke publish.

    A malformed body or a chain too deep is a 412: inside the parent's run it fails the run
    visibly (a 400 would read as "the run is over" to the JS SDK, which then stops quietly).
    """
    level = depth(forwarded)
    if level >= MAX_DEPTH:
        raise PreconditionFailed(
            f"invoke depth {level} reached the limit of {MAX_DEPTH}: a workflow can invoke "
            "workflows at most 99 levels deep"
        )
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        raise PreconditionFailed("an invoke publish must have a JSON object body")
    run_id, url = doc.get("workflowRunId"), doc.get("workflowUrl")
    created = doc.get("workflowRunCreatedAt")
    headers, step = doc.get("headers") or {}, doc.get("step")
    if not isinstance(run_id, str) or not run_id or not isinstance(url, str) or not url:
        raise PreconditionFailed("an invoke publish must name the invoking run and its URL")
    if not isinstance(step, dict) or not isinstance(headers, dict):
        raise PreconditionFailed("an invoke publish must carry the invoking step and headers")
    kept: Headers = {}
    for name, values in headers.items():
        if not isinstance(name, str) or name.lower() in _DROPPED:
            continue
        listed = values if isinstance(values, list) else [values]
        kept[name] = [str(v) for v in listed]
    payload = doc.get("body")
    invoker = Invoker(
        run_id=run_id,
        url=url,
        created_ms=created if isinstance(created, int) else 0,
        headers=kept,
        step=orjson.dumps(step),
    )
    return invoker, b"" if payload is None else _text(payload).encode()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def result_step(invoker: Invoker, state: RunState, result: bytes | None) -> bytes:
    """The `Invoke` step the parent receives: the stored step with `out` = the JSON text of
    `{body?, isFailed, isCanceled}`. Both booleans are explicit and `body` is absent unless the
    child succeeded with a body (the SDK CI compares with `===`)."""
    out: dict[str, Any] = {}
    if state is RunState.SUCCESS and result:
        out["body"] = result.decode("utf-8", "replace")
    out["isFailed"] = state is RunState.FAILED
    out["isCanceled"] = state is RunState.CANCELED
    step = orjson.loads(invoker.step)
    step["out"] = orjson.dumps(out).decode()
    return orjson.dumps(step)


def result_append(
    invoker: Invoker,
    parent: Run,
    state: RunState,
    result: bytes | None,
    *,
    now_ms: int,
    new_id: Callable[[], str],
    limits: Limits,
) -> RunAppend | None:
    """The parent's step message carrying the child's end, or None when the stored headers do
    not name the parent run (nothing can be routed)."""
    pairs = [(name, v) for name, values in invoker.headers.items() for v in values]
    control = ctl.read(pairs)
    if control is None or control.run_id != parent.run_id:
        return None
    options = parse_options(pairs, limits=limits)
    [message] = build_messages(
        account_id=parent.account_id,
        targets=[Endpoint(invoker.url)],
        options=options,
        body=result_step(invoker, state, result),
        now_ms=now_ms,
        new_id=new_id,
        caller_ip=parent.caller_ip,
        dedup=False,
    )
    m = runs.run_message(message, control, parent)
    return RunAppend(m, control.call_type, step_key=steps.step_key(m.body))
