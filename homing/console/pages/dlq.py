"""The dead-letter queue: search, and single or bulk retry and delete after a confirmation.

A retry is `homing.actions.dlq.retry`, as `POST /v2/dlq/retry` with no override headers: an
entry retried twice (two tabs, two operators) is delivered once.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from homing.actions import dlq
from homing.actions.context import Services
from homing.console import filtering
from homing.console.context import Viewer, services
from homing.console.gate import action, page
from homing.console.respond import back, confirm_page, confirmed, flash, page_response
from homing.errors import InvalidRequest
from homing.models import Message, MessageFilter

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
        "next_cursor": result.cursor,
    }
    return page_response(request, viewer, "dlq.html", context)


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
