"""The workflow client: run logs (`client.logs`) and the workflow DLQ (`client.dlq`):
`GET /v2/dlq?source=workflow` and `/v2/workflows/dlq[/{dlqId}]`, resume, restart, the
failure-callback retry and delete."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from homing.actions import workflow_dlq
from homing.actions import workflows as workflow_runs
from homing.actions.context import Services
from homing.api.context import account
from homing.errors import InvalidRequest, NotFound
from homing.models import MessageFilter
from homing.numbers import parse_int
from homing.web import filters, views
from homing.web.http import JSON
from homing.workflow import dlq as rules
from homing.workflow import logs as run_logs

_BASE = ("dlqIds", "url", "label", "flowControlKey", "callerIp", "callerIP", "responseStatus")
_OWN = ("workflowRunId", "workflowRunIds", "workflowUrl", "workflowCreatedAt",
        "failureFunctionState", "source")  # fmt: skip
MAX_COUNT = 100
RESTART_MAX_COUNT = 50


def _cursor(raw: str | None) -> str | None:
    if raw is None or raw.strip() == "":
        return None
    return str(parse_int(raw, "cursor"))


def _selection(params: QueryParams) -> workflow_dlq.Selection:
    created = params.get("workflowCreatedAt")
    run_ids = tuple(params.getlist("workflowRunId") + params.getlist("workflowRunIds"))
    return workflow_dlq.Selection(
        run_ids=tuple(r for r in run_ids if r),
        url=params.get("workflowUrl") or None,
        created_ms=parse_int(created, "workflowCreatedAt") if created else None,
    )


def _entry_json(found: workflow_dlq.Entry) -> dict[str, Any]:
    return rules.entry_json(views.dlq_json(found.entry), found.entry, found.run, found.callback)


async def _page(
    svc: Services, account_id: str, params: QueryParams, *, strict: bool, maximum: int = MAX_COUNT
) -> tuple[list[workflow_dlq.Entry], str | None]:
    base = filters.parse_filter(params, allowed=_BASE, strict=strict, extra=_OWN)
    if base.dlq_ids:
        base = MessageFilter(dlq_ids=base.dlq_ids)
    count = filters.count(params, default=maximum, maximum=maximum)
    assert count is not None
    return await workflow_dlq.list_entries(
        svc, account_id, base, _selection(params), cursor=_cursor(params.get("cursor")), count=count
    )


async def list_entries(request: Request) -> Response:
    """`GET /v2/workflows/dlq`, and `GET /v2/dlq?source=workflow` (what the JS SDK calls)."""
    svc, account_id = await account(request)
    entries, cursor = await _page(svc, account_id, request.query_params, strict=False)
    out: dict[str, Any] = {"messages": [_entry_json(e) for e in entries]}
    if cursor is not None:
        out["cursor"] = cursor
    return JSON(out)


async def get_entry(request: Request) -> Response:
    svc, account_id = await account(request)
    found = await workflow_dlq.get_entry(svc, account_id, request.path_params["dlq_id"])
    return JSON(_entry_json(found))


def _retries(request: Request) -> int | None:
    raw = request.headers.get("upstash-retries")
    return None if raw is None or raw == "" else parse_int(raw, "Upstash-Retries", 0, 100)


async def _start_again(request: Request, *, restart: bool) -> Response:
    svc, account_id = await account(request)
    params = request.query_params
    single = request.path_params.get("dlq_id")
    if single is not None:
        entries = [(await workflow_dlq.get_entry(svc, account_id, single)).entry]
        cursor = None
    elif filters.given_empty(params, _BASE + _OWN):
        entries, cursor = [], None
    else:
        # The workflow API's OpenAPI: a restart covers at most 50 entries per request.
        limit = RESTART_MAX_COUNT if restart else MAX_COUNT
        found, cursor = await _page(svc, account_id, params, strict=True, maximum=limit)
        entries = [f.entry for f in found]
    started = await workflow_dlq.start_again(
        svc, entries, restart=restart, retries=_retries(request)
    )
    runs = [{"workflowRunId": s.run_id, "workflowCreatedAt": s.created_ms} for s in started]
    if single is not None:
        if not runs:
            raise NotFound(f"workflow DLQ entry {single!r} not found")
        return JSON(runs[0])
    out: dict[str, Any] = {"workflowRuns": runs}
    if cursor is not None:
        out["cursor"] = cursor
    return JSON(out)


async def resume(request: Request) -> Response:
    return await _start_again(request, restart=False)


async def restart(request: Request) -> Response:
    return await _start_again(request, restart=True)


async def retry_callback(request: Request) -> Response:
    svc, account_id = await account(request)
    started = await workflow_dlq.retry_failure_callback(
        svc, account_id, request.path_params["dlq_id"]
    )
    return JSON({"workflowRunId": started.run_id, "workflowCreatedAt": started.created_ms})


async def delete_many(request: Request) -> Response:
    svc, account_id = await account(request)
    params = request.query_params
    if filters.given_empty(params, _BASE + _OWN):
        return JSON({"deleted": 0})
    found, cursor = await _page(svc, account_id, params, strict=True)
    deleted = await workflow_dlq.delete_entries(svc, account_id, [f.entry for f in found])
    out: dict[str, Any] = {"deleted": deleted}
    if cursor is not None:
        out["cursor"] = cursor
    return JSON(out)


async def delete_one(request: Request) -> Response:
    svc, account_id = await account(request)
    found = await workflow_dlq.get_entry(svc, account_id, request.path_params["dlq_id"])
    if not await workflow_dlq.delete_entries(svc, account_id, [found.entry]):
        raise NotFound(f"workflow DLQ entry {request.path_params['dlq_id']!r} not found")
    return JSON({"deleted": 1})


def reject_unknown_source(value: str) -> None:
    if value not in ("workflow", "qstash", ""):
        raise InvalidRequest(f"unknown DLQ source {value!r}: expected 'workflow'")


LOGS_MAX_COUNT = 10


async def logs(request: Request) -> Response:
    """`GET /v2/workflows/events` (what `client.logs` calls) and `/v2/workflows/logs`: runs,
    newest first, with their steps. `workflowUrl` is an exact match here."""
    svc, account_id = await account(request)
    params = request.query_params
    run_filter = filters.run_filter(params)
    if run_filter.url is not None:
        run_filter = dataclasses.replace(run_filter, url_exact=True)
    count = filters.count(params, default=LOGS_MAX_COUNT, maximum=LOGS_MAX_COUNT)
    assert count is not None
    page = await workflow_runs.run_logs(
        svc,
        account_id,
        run_filter,
        created_ms=parse_int(params["workflowCreatedAt"], "workflowCreatedAt")
        if params.get("workflowCreatedAt")
        else None,
        cursor=params.get("cursor") or None,
        count=count,
    )
    out: dict[str, Any] = {
        "runs": [run_logs.run_json(r.run, r.entries, r.callback) for r in page.items]
    }
    if page.cursor is not None:
        out["cursor"] = page.cursor
    return JSON(out)
