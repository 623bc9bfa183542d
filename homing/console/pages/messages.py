"""Messages and logs: a searchable, paged event list, and one message's whole timeline.

What a message shows of its request (headers, body) comes from `views.message_json`, so the
redaction a publisher asked for (Upstash-Redact-Fields) applies here exactly as in the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from homing.console import filtering, render
from homing.console.context import Viewer, services
from homing.console.gate import action, page
from homing.console.respond import confirm_page, confirmed, flash, page_response
from homing.errors import NotFound
from homing.models import LogEntry, LogState, Message, MessageFilter
from homing.web import views

PAGE_SIZE = 50
TIMELINE_LIMIT = 500


@page
async def list_messages(request: Request, viewer: Viewer) -> Response:
    found = filtering.search(request.query_params, filtering.MESSAGE_FIELDS)
    result = await services(request).storage.list_logs(
        viewer.account_id,
        filter=found.filter,
        before_id=filtering.log_cursor(found.cursor),
        count=PAGE_SIZE,
        newest_first=True,
    )
    context = {
        "nav": "messages",
        "search": found,
        "entries": result.items,
        "next_cursor": result.cursor,
        "states": filtering.STATE_CHOICES,
    }
    return page_response(request, viewer, "messages.html", context)


@dataclass(frozen=True, slots=True)
class Step:
    """One line of a message's timeline."""

    entry: LogEntry
    attempt: int | None  # the attempt an ACTIVE / ERROR / DELIVERED line belongs to
    status: int | None
    error: str | None
    next_ms: int | None
    headers: dict[str, list[str]]
    body: render.Body | None


def timeline(entries: list[LogEntry], message: Message) -> list[Step]:
    steps: list[Step] = []
    attempt = 0
    last_delivered = max(
        (i for i, e in enumerate(entries) if e.state is LogState.DELIVERED), default=-1
    )
    for index, entry in enumerate(entries):
        info = entry.info
        if entry.state is LogState.ACTIVE:
            attempt += 1
        headers: dict[str, list[str]] = info.get("responseHeader") or {}
        shown = render.b64_body(info["responseBody"]) if "responseBody" in info else None
        if index == last_delivered and message.last_response is not None:
            # A success is logged with its status only; its answer is the message's last one.
            headers = message.last_response.headers
            shown = render.body(message.last_response.body)
        steps.append(
            Step(
                entry=entry,
                attempt=attempt
                if attempt and entry.state in (LogState.ACTIVE, LogState.ERROR, LogState.DELIVERED)
                else None,
                status=info.get("responseStatus"),
                error=info.get("error"),
                next_ms=info.get("nextDeliveryTime"),
                headers=headers,
                body=shown,
            )
        )
    return steps


def request_view(message: Message) -> dict[str, Any]:
    """The request as the API shows it: redacted headers and body."""
    shown = views.message_json(message)
    if "bodyBase64" in shown:
        body = render.Body(shown["bodyBase64"], True, 0, len(message.body))
    else:
        raw = str(shown.get("body", "")).encode()
        body = render.body(raw)
    return {"json": shown, "headers": shown.get("header", {}), "body": body}


@page
async def show_message(request: Request, viewer: Viewer) -> Response:
    svc = services(request)
    message_id = request.path_params["message_id"]
    message = await svc.storage.get_message(viewer.account_id, message_id)
    if message is None:
        raise NotFound(f"Message {message_id} was not found (it may have expired).")
    logs = await svc.storage.list_logs(
        viewer.account_id,
        filter=MessageFilter(message_ids=(message_id,)),
        before_id=None,
        count=TIMELINE_LIMIT,
        newest_first=False,
    )
    context = {
        "nav": "messages",
        "message": message,
        "request_view": request_view(message),
        "steps": timeline(logs.items, message),
        "last": render.body(message.last_response.body) if message.last_response else None,
    }
    return page_response(request, viewer, "message.html", context)


@action()
async def cancel_message(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    message_id = request.path_params["message_id"]
    if not confirmed(form):
        return confirm_page(request, viewer, form, f"Cancel message {message_id}?", [])
    svc = services(request)
    count = await svc.storage.cancel_messages(
        viewer.account_id,
        message_ids=[message_id],
        filter=None,
        limit=None,
        now_ms=svc.clock.now_ms(),
    )
    response = RedirectResponse(f"/console/messages/{quote(message_id, safe='')}", 303)
    if count:
        return flash(request, response, "Cancel requested.")
    return flash(request, response, "The message had already finished.", "error")
