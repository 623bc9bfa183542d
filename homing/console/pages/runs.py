"""Upstash Workflow runs: a searchable, paged list, and one run with its step list.

Everything a run shows that its publisher sent (initial payload, step results, run headers)
goes through the run's own redaction (`Upstash-Redact-Fields` on its init, as the API applies
it to the run's messages), then the console's masking; bodies are text on the page, never
markup. A cancel is `actions.workflows.end_run`, as `DELETE /v2/workflows/runs/{id}?cancel=true`.

A run's page lists the events it waits for (`context.waitForEvent`) and notifies one of them
with `actions.events.notify_run`, as `POST /v2/notify/{runId}/{eventId}`: run-scoped, so an
operator reaches this run only, never every run of the account waiting on the same event id,
and an event sent before the run waits is kept for its next wait on that id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from homing.actions import events, workflow_dlq, workflows
from homing.actions.context import Services
from homing.console import filtering, render
from homing.console.context import Viewer, services
from homing.console.gate import action, page
from homing.console.pages.dlq import run_entry
from homing.console.respond import confirm_page, confirmed, flash, page_response
from homing.errors import NotFound
from homing.models import MessageFilter, Redaction, Run, RunState, RunStep, Waiter
from homing.web import views

PAGE_SIZE = 50


@page
async def list_runs(request: Request, viewer: Viewer) -> Response:
    found = filtering.run_search(request.query_params)
    result = await services(request).storage.list_runs(
        viewer.account_id, filter=found.filter, cursor=found.cursor, count=PAGE_SIZE
    )
    context = {
        "nav": "runs",
        "search": found,
        "runs": result.items,
        "next_cursor": result.cursor,
        "states": filtering.RUN_STATE_CHOICES,
    }
    return page_response(request, viewer, "runs.html", context)


@dataclass(frozen=True, slots=True)
class StepView:
    """One entry of a run's step list as the page shows it."""

    step: RunStep
    name: str | None  # the SDK's step name (`stepName`), when the body is a step result
    step_id: int | None
    step_type: str | None
    body: render.Body
    wait: WaitResult | None = None


@dataclass(frozen=True, slots=True)
class WaitResult:
    """The result of a `waitForEvent` step: its event id, and whether it timed out."""

    event_id: str
    timed_out: bool


def wait_result(body: bytes) -> WaitResult | None:
    """The wait outcome of a step result body (`waitEventId`, `waitTimeout`), else None."""
    if not body.startswith(b"{"):
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("waitEventId"), str):
        return None
    return WaitResult(doc["waitEventId"], doc.get("waitTimeout") is True)


def step_fields(body: bytes) -> tuple[str | None, int | None, str | None]:
    """(stepName, stepId, stepType) of a step result body such as the SDKs publish
    (`{"stepId": 1, "stepName": "charge", "stepType": "Run", "out": ...}`); Nones for any other
    body (the initial payload, a call's result)."""
    if not body.startswith(b"{"):
        return None, None, None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None, None
    if not isinstance(doc, dict):
        return None, None, None
    name, step_id, kind = doc.get("stepName"), doc.get("stepId"), doc.get("stepType")
    return (
        name if isinstance(name, str) else None,
        step_id if isinstance(step_id, int) and not isinstance(step_id, bool) else None,
        kind if isinstance(kind, str) else None,
    )


def shown_body(raw: bytes, redact: Redaction) -> render.Body:
    if redact.body and raw:
        return render.body(views.redacted_value(raw).encode())
    return render.body(raw)


def step_views(run: Run) -> list[StepView]:
    redact = run.config.redact
    out = []
    for step in run.steps:
        # A redacted body says nothing of its step either.
        name, step_id, kind = (None, None, None) if redact.body else step_fields(step.body)
        wait = None if redact.body else wait_result(step.body)
        out.append(StepView(step, name, step_id, kind, shown_body(step.body, redact), wait))
    return out


def run_view(run: Run) -> dict[str, Any]:
    redact = run.config.redact
    return {
        "payload": shown_body(run.payload, redact),
        "result": shown_body(run.result, redact) if run.result is not None else None,
        "headers": views.redact_headers(run.config.headers, redact),
        "steps": step_views(run),
    }


# The message that failed a run is one of its last steps (parallel steps fail together).
_FAILED_STEPS = 20


async def dlq_entry(svc: Services, run: Run) -> workflow_dlq.Entry | None:
    """The DLQ entry of a failed run (resumed, restarted or deleted: None)."""
    if run.state is not RunState.FAILED or not run.steps:
        return None
    ids = tuple(s.message_id for s in run.steps[-_FAILED_STEPS:])
    found, _ = await workflow_dlq.list_entries(
        svc,
        run.account_id,
        MessageFilter(message_ids=ids),
        workflow_dlq.Selection(run_ids=(run.run_id,), created_ms=run.created_ms),
        cursor=None,
        count=len(ids),
    )
    return found[0] if found else None


@page
async def show_run(request: Request, viewer: Viewer) -> Response:
    run_id = request.path_params["run_id"]
    svc = services(request)
    run = await svc.storage.get_run(viewer.account_id, run_id)
    if run is None:
        raise NotFound(f"Workflow run {run_id} was not found (it may have expired).")
    found = await dlq_entry(svc, run)
    waiting: list[Waiter] = []
    if not run.state.is_final:
        waiting = await events.run_waiters(svc, viewer.account_id, run_id)
    context = {
        "waiters": waiting,
        "nav": "runs",
        "run": run,
        "view": run_view(run),
        "dlq": run_entry(found.entry, found.callbacks) if found else None,
        "dlq_message_id": found.entry.id if found else None,
    }
    return page_response(request, viewer, "run.html", context)


@action()
async def cancel_run(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    run_id = request.path_params["run_id"]
    if not confirmed(form):
        detail = ["Its pending steps are canceled; the workflow is not called again."]
        return confirm_page(request, viewer, form, f"Cancel workflow run {run_id}?", detail)
    svc = services(request)
    target = RedirectResponse(f"/console/runs/{quote(run_id, safe='')}", 303)
    # Canceling a canceled run succeeds on the API (the SDK may repeat it); here it would say
    # "canceled" about a run someone else ended, so an ended run is refused first.
    if await workflows.active_run(svc, viewer.account_id, run_id) is None:
        run = await svc.storage.get_run(viewer.account_id, run_id)
        if run is None:
            raise NotFound(f"Workflow run {run_id} was not found (it may have expired).")
        return flash(request, target, f"The run had already ended ({run.state.value}).", "error")
    await workflows.end_run(svc, viewer.account_id, run_id, cancel=True, result=b"")
    return flash(request, target, "Run canceled.")


@action()
async def notify(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    run_id = request.path_params["run_id"]
    event_id = form.get("eventId") or ""
    svc = services(request)
    target = RedirectResponse(f"/console/runs/{quote(run_id, safe='')}", 303)
    if await workflows.active_run(svc, viewer.account_id, run_id) is None:
        return flash(request, target, "The run has ended: it waits for no event.", "error")
    data = (form.get("data") or "").encode()
    reached = await events.notify_run(svc, viewer.account_id, run_id, event_id, data)
    notified = sum(1 for r in reached if r.message_id)
    if notified:
        return flash(request, target, f"Event {event_id} notified: the run continues.")
    if reached:  # the run ended while the event was on its way
        text = reached[0].error or "The run did not take the event."
        return flash(request, target, text, "error")
    text = f"The run does not wait for {event_id} yet: the event is kept for its next wait."
    return flash(request, target, text)
