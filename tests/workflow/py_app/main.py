"""An Upstash Workflow app (FastAPI, the published `upstash-workflow` 2.0.0) that the end-to-end
tests run against Homing: one workflow per behaviour the Python SDK supports (sequential steps,
sleep and sleep_until, call, failure function; it has no parallel steps and no client).

Configured only through the SDK's environment variables (QSTASH_URL, QSTASH_TOKEN,
QSTASH_*_SIGNING_KEY, UPSTASH_WORKFLOW_URL) and PORT. A run starts from a signed delivery: the
test publishes the payload to a workflow route through Homing. Each payload carries a `tag` so
the test can find the run id the SDK chose. What each run saw is kept in memory and served on
`/__test/events` and `/__test/deliveries`.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from qstash import Receiver
from upstash_workflow import AsyncWorkflowContext
from upstash_workflow.fastapi import Serve

PORT = int(os.environ.get("PORT", "8000"))
# The third party that `context.call` reaches: the test's own receiver.
THIRD_PARTY_URL = os.environ.get("THIRD_PARTY_URL", "http://127.0.0.1:9/third-party")

app = FastAPI()
serve = Serve(app)
events: list[dict[str, Any]] = []
deliveries: list[dict[str, Any]] = []

# The SDK already refuses unverified requests; this independent check records the verdict on
# every request that reaches a workflow route, so a test shows each one was signed by Homing.
verifier = Receiver(
    current_signing_key=os.environ.get("QSTASH_CURRENT_SIGNING_KEY", ""),
    next_signing_key=os.environ.get("QSTASH_NEXT_SIGNING_KEY", ""),
)


def record(kind: str, context: AsyncWorkflowContext[Any] | None, **fields: Any) -> None:
    entry: dict[str, Any] = {"kind": kind, "at": int(time.time() * 1000), **fields}
    if context is not None:
        entry["runId"] = context.workflow_run_id
        payload = context.request_payload
        entry["tag"] = payload.get("tag") if isinstance(payload, dict) else None
    events.append(entry)


@app.middleware("http")
async def check_signature(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    if not request.url.path.startswith("/wf/"):
        return await call_next(request)
    signature = request.headers.get("upstash-signature")
    body = (await request.body()).decode()
    verified = False
    if signature:
        try:
            verifier.verify(signature=signature, body=body)
            verified = True
        except Exception:  # any verification error is a verdict, recorded for the test
            verified = False
    response = await call_next(request)
    deliveries.append({
        "kind": "delivery",
        "at": int(time.time() * 1000),
        "path": request.url.path,
        "runId": request.headers.get("upstash-workflow-runid"),
        "messageId": request.headers.get("upstash-message-id"),
        "signed": signature is not None,
        "verified": verified,
        "status": response.status_code,
    })  # fmt: skip
    return response


@app.get("/health")
async def health() -> Response:
    return Response("ok")


@app.get("/__test/events")
async def list_events() -> JSONResponse:
    return JSONResponse({"events": events})


@app.get("/__test/deliveries")
async def list_deliveries() -> JSONResponse:
    return JSONResponse({"deliveries": deliveries})


@serve.post("/wf/sequential")
async def sequential(context: AsyncWorkflowContext[dict[str, Any]]) -> None:
    record("invoked", context)
    n: int = context.request_payload["n"]
    # Steps that take a while, so a test can kill Homing while one runs.
    pause: float = context.request_payload.get("pause", 0)

    async def add_one() -> int:
        record("step", context, step="add-one", input=n)
        await asyncio.sleep(pause)
        return n + 1

    a: int = await context.run("add-one", add_one)

    async def double() -> int:
        record("step", context, step="double", input=a)
        await asyncio.sleep(pause)
        return a * 2

    b: int = await context.run("double", double)

    async def describe() -> str:
        record("step", context, step="describe", input=b)
        await asyncio.sleep(pause)
        return f"result:{b}"

    c: str = await context.run("describe", describe)
    record("completed", context, result={"a": a, "b": b, "c": c})


@serve.post("/wf/sleepy")
async def sleepy(context: AsyncWorkflowContext[dict[str, Any]]) -> None:
    record("invoked", context)
    seconds: int = context.request_payload["seconds"]

    async def before() -> float:
        record("step", context, step="before")
        return time.time()

    started: float = await context.run("before", before)
    await context.sleep("nap", seconds)

    async def after_sleep() -> float:
        record("step", context, step="after-sleep")
        return time.time()

    napped: float = await context.run("after-sleep", after_sleep)
    # Derived from a stored step result, so every replay of the route sleeps until the same
    # instant; whole seconds, the precision of the Upstash-Not-Before header.
    until = math.ceil(napped) + seconds
    await context.sleep_until("until", until)

    async def after_sleep_until() -> float:
        record("step", context, step="after-sleep-until")
        return time.time()

    woke: float = await context.run("after-sleep-until", after_sleep_until)
    result = {"started": started, "napped": napped, "until": until, "woke": woke}
    record("completed", context, result=result)


@serve.post("/wf/caller")
async def caller(context: AsyncWorkflowContext[dict[str, Any]]) -> None:
    record("invoked", context)
    response = await context.call(
        "call-third-party",
        url=THIRD_PARTY_URL,
        method="POST",
        # The call's result arrives as a delivery whose payload is the callback document, and
        # the SDK replays the route up to here on it: read the payload defensively.
        body={"word": context.request_payload.get("word")},
        headers={"X-Test-Header": "sent-by-workflow", "Content-Type": "application/json"},
    )

    async def seen() -> None:
        record(
            "call-result",
            context,
            status=response.status,
            header=response.header,
            body=response.body,
        )

    await context.run("seen", seen)
    record("completed", context, result=response.status)


async def on_failure(
    context: AsyncWorkflowContext[dict[str, Any]],
    fail_status: int,
    fail_response: str,
    fail_headers: dict[str, str],
) -> None:
    record("failure-function", context, failStatus=fail_status, failResponse=fail_response)


@serve.post("/wf/failing", retries=0, failure_function=on_failure)
async def failing(context: AsyncWorkflowContext[dict[str, Any]]) -> None:
    record("invoked", context)

    async def explode() -> None:
        record("step", context, step="explode")
        raise RuntimeError(f"boom in {context.workflow_run_id}")

    await context.run("explode", explode)


# Fails the first time its fragile step runs for a payload's tag, then succeeds: the first run
# fails (no retries) into the workflow DLQ; the run resumed or restarted from there completes.
broken_once: set[str] = set()


@serve.post("/wf/flaky", retries=0, failure_function=on_failure)
async def flaky(context: AsyncWorkflowContext[dict[str, Any]]) -> None:
    record("invoked", context)
    tag = context.request_payload["tag"]

    async def prepare() -> str:
        record("step", context, step="prepare")
        return f"prepared-{tag}"

    prepared = await context.run("prepare", prepare)

    async def fragile() -> str:
        record("step", context, step="fragile")
        if tag not in broken_once:
            broken_once.add(tag)
            raise RuntimeError(f"fragile step broke for {tag}")
        return f"{prepared}-done"

    result = await context.run("fragile", fragile)
    record("completed", context, result=result)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
