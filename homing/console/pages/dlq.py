"""The dead-letter queue: search, and single or bulk retry and delete after a confirmation.

A retry is `homing.actions.dlq.retry`, as `POST /v2/dlq/retry` with no override headers: an
entry retried twice (two tabs, two operators) is delivered once.

An entry whose failure failed a workflow run is resumed or restarted instead (under a new run
id) and its run's failure callback can be sent again: `homing.actions.workflow_dlq`, as
`POST /v2/workflows/dlq/{resume,restart,callback}/{dlqId}`. The entry leaves the DLQ before
its new run starts, so a second click starts nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from homing.actions import dlq, workflow_dlq
from homing.actions.context import Services
from homing.console import filtering
from homing.console.context import Viewer, services
from homing.console.gate import action, page
from homing.console.respond import back, confirm_page, confirmed, flash, page_response
from homing.errors import InvalidRequest, NotFound
from homing.models import Message, MessageFilter
from homing.workflow import dlq as workflow_rules

PAGE_SIZE = 50
MAX_SELECTED = 100


@page
async def list_dlq(request: Request, viewer: Viewer) -> Response:
    found = filtering.search(request.query_params, filtering.DLQ_FIELDS)
    result = await services(request).storage.list_dlq(
        viewer.account_id,
        filter=found.filter,
        cursor=found.cursor,
        count=PAGE_SIZE,
        newest_first=True,
    )
    context = {
        "nav": "dlq",
        "search": found,
        "entries": result.items,
        "runs": await run_entries(services(request), result.items),
        "next_cursor": result.cursor,
    }
    return page_response(request, viewer, "dlq.html", context)


@dataclass(frozen=True, slots=True)
class RunEntry:
    """What the console shows of a DLQ entry that failed a workflow run."""

    dlq_id: str
    run_id: str
    callback_state: str | None  # of the latest send of the run's failure callback (CALLBACK_*)
    callback_retryable: bool


def run_entry(entry: Message, callbacks: Sequence[Message]) -> RunEntry | None:
    tag = entry.spec.workflow
    if tag is None or entry.dlq_id is None or not workflow_dlq.Selection().matches(entry):
        return None
    state = workflow_rules.callback_state(callbacks[-1]) if callbacks else None
    # The same rule as the use case: only a failed send, at most MAX_CALLBACK_RETRIES times.
    retryable = state == "CALLBACK_FAIL" and len(callbacks) <= workflow_rules.MAX_CALLBACK_RETRIES
    return RunEntry(entry.dlq_id, tag.run_id, state, retryable)


async def run_entries(svc: Services, entries: Sequence[Message]) -> dict[str, RunEntry]:
    """The entries of a page that failed a workflow run, by DLQ id."""
    out: dict[str, RunEntry] = {}
    for entry in entries:
        if entry.spec.workflow is None or not workflow_dlq.Selection().matches(entry):
            continue  # most entries: no look-up
        found = run_entry(entry, await workflow_dlq.failure_callbacks(svc, entry))
        if found is not None:
            out[found.dlq_id] = found
    return out


async def _selected(svc: Services, account_id: str, form: QueryParams) -> list[Message]:
    dlq_ids = tuple(dict.fromkeys(i for i in form.getlist("dlqId") if i))
    if not dlq_ids:
        raise InvalidRequest("Select at least one entry first.")
    if len(dlq_ids) > MAX_SELECTED:
        raise InvalidRequest(f"Select at most {MAX_SELECTED} entries at once.")
    found = await svc.storage.list_dlq(
        account_id, filter=MessageFilter(dlq_ids=dlq_ids), cursor=None, count=len(dlq_ids)
    )
    return found.items


def _describe(entries: Sequence[Message]) -> list[str]:
    return [f"{m.dlq_id} · {m.spec.method} {m.url}" for m in entries]


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


@action()
async def retry(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    svc = services(request)
    entries = await _selected(svc, viewer.account_id, form)
    if not confirmed(form):
        question = f"Retry {_plural(len(entries), 'message', 'messages')} from the DLQ?"
        return confirm_page(request, viewer, form, question, _describe(entries))
    results = await dlq.retry(svc, viewer.account_id, entries)
    new_ids = [r.message_id for r in results if r is not None]
    target = back(request, form)
    if len(new_ids) == 1 and target.startswith("/console/messages/"):
        target = f"/console/messages/{new_ids[0]}"  # retried from its page: follow the retry
    text = f"Retried {_plural(len(new_ids), 'message', 'messages')}."
    if len(new_ids) < len(entries):
        text += " Others had already left the DLQ."
    return flash(request, RedirectResponse(target, 303), text)


@action()
async def delete(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    svc = services(request)
    entries = await _selected(svc, viewer.account_id, form)
    if not confirmed(form):
        question = f"Delete {_plural(len(entries), 'entry', 'entries')} from the DLQ for good?"
        return confirm_page(request, viewer, form, question, _describe(entries))
    deleted = await svc.storage.delete_dlq(viewer.account_id, [m.dlq_id or "" for m in entries])
    target = back(request, form)
    if target.startswith("/console/messages/"):
        target = "/console/dlq"
    text = f"Deleted {_plural(deleted, 'entry', 'entries')}."
    return flash(request, RedirectResponse(target, 303), text)


async def _run_failures(svc: Services, account_id: str, form: QueryParams) -> list[Message]:
    """The selected entries that failed a workflow run, one per run (two parallel steps failing
    together leave two entries of one run; both would resume the same run)."""
    selected = await _selected(svc, account_id, form)
    if not selected:
        raise NotFound("The selected entries have already left the DLQ.")
    by_run: dict[tuple[str, int], Message] = {}
    for entry in selected:
        tag = entry.spec.workflow
        if tag is not None and workflow_dlq.Selection().matches(entry):
            by_run.setdefault((tag.run_id, tag.created_ms), entry)
    if not by_run:
        raise InvalidRequest("None of the selected entries failed a workflow run.")
    return list(by_run.values())


def _run_of(entry: Message) -> str:
    return entry.spec.workflow.run_id if entry.spec.workflow else ""


async def _start_again(
    request: Request, viewer: Viewer, form: QueryParams, *, restart: bool
) -> Response:
    svc = services(request)
    entries = await _run_failures(svc, viewer.account_id, form)
    if not confirmed(form):
        verb = "Restart" if restart else "Resume"
        question = (
            f"{verb} {_plural(len(entries), 'workflow run', 'workflow runs')} under a new run id?"
        )
        how = (
            "The new run starts over from the initial payload."
            if restart
            else "The new run keeps the steps that succeeded and retries the failed one."
        )
        detail = [f"{m.dlq_id} · run {_run_of(m)} · {m.url}" for m in entries] + [how]
        return confirm_page(request, viewer, form, question, detail)
    started = await workflow_dlq.start_again(svc, entries, restart=restart, retries=None)
    target = back(request, form)
    if not started:
        text = "Nothing was started: the entry had already left the DLQ or its run expired."
        return flash(request, RedirectResponse(target, 303), text, "error")
    done = "Restarted" if restart else "Resumed"
    if len(started) == 1:
        target = f"/console/runs/{quote(started[0].run_id, safe='')}"  # follow the new run
        text = f"{done} run {_run_of(entries[0])} as {started[0].run_id}."
    else:
        text = f"{done} {_plural(len(started), 'run', 'runs')}."
    if len(started) < len(entries):
        text += " Others had already left the DLQ or expired."
    return flash(request, RedirectResponse(target, 303), text)


@action()
async def resume(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    return await _start_again(request, viewer, form, restart=False)


@action()
async def restart(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    return await _start_again(request, viewer, form, restart=True)


@action()
async def retry_callback(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    svc = services(request)
    dlq_id = form.get("dlqId") or ""
    found = await workflow_dlq.get_entry(svc, viewer.account_id, dlq_id)
    run_id = _run_of(found.entry)
    if not confirmed(form):
        question = f"Send the failure callback of workflow run {run_id} again?"
        return confirm_page(request, viewer, form, question, [f"{dlq_id} · run {run_id}"])
    await workflow_dlq.retry_failure_callback(svc, viewer.account_id, dlq_id)
    text = f"The failure callback of run {run_id} is sent again."
    return flash(request, RedirectResponse(back(request, form), 303), text)
