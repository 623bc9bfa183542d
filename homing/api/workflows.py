"""Upstash Workflow endpoints: the step list (`GET /v2/workflows/runs/{id}`), the run end and
cancel (`DELETE /v2/workflows/runs/{id}`, bulk `DELETE /v2/workflows/runs`), and clear answers
for the workflow features Homing does not have yet. Events (wait, notify, waiters, webhooks)
are in `api/events.py`.

A run's steps themselves arrive as ordinary publishes (`api/publish.py`).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from homing.actions import workflows
from homing.api.context import account
from homing.errors import InvalidRequest, NotFound, NotImplementedYet
from homing.headers import parse_bool
from homing.models import RunFilter
from homing.numbers import parse_int
from homing.web import filters
from homing.web.http import JSON, read_body, read_json
from homing.workflow import steps

# A bulk cancel without `count` (the JSON-body form of older SDKs) covers every matching run.
MAX_CANCEL_COUNT = 100_000


def _run_id(request: Request) -> str:
    run_id: str = request.path_params["run_id"]
    if not run_id:
        raise InvalidRequest("expected a workflow run id")
    return run_id


async def get_steps(request: Request) -> Response:
    """The whole step list of an active run (the SDK's LazyFetch); 404 once it has ended."""
    svc, account_id = await account(request)
    run_id = _run_id(request)
    listed = await workflows.step_list(svc, account_id, run_id)
    if listed is None:
        raise NotFound(f"workflow run {run_id!r} not found or already ended")
    return Response(steps.step_list_body(listed), media_type="application/json")


async def end_run(request: Request) -> Response:
    svc, account_id = await account(request)
    run_id = _run_id(request)
    cancel = parse_bool(request.query_params.get("cancel") or "false", "cancel")
    body = await read_body(request, svc.settings.max_body_size)
    await workflows.end_run(svc, account_id, run_id, cancel=cancel, result=body)
    return JSON({})


def _legacy_filter(body: Any) -> RunFilter:
    """The JSON body older SDKs (JS <= 1.2.0) send: `{"workflowRunIds": [...]}`,
    `{"workflowUrl": "<prefix>"}` or `{}` (every run)."""
    if not isinstance(body, dict):
        raise InvalidRequest('the body must be a JSON object such as {"workflowRunIds": [...]}')
    ids = body.get("workflowRunIds")
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise InvalidRequest("workflowRunIds must be an array of strings")
        return RunFilter(run_ids=tuple(ids))
    url = body.get("workflowUrl")
    if url is not None and not isinstance(url, str):
        raise InvalidRequest("workflowUrl must be a string")
    return RunFilter(url=url or None)


def _count(params: QueryParams) -> int | None:
    value = params.get("count")
    if value is None or value == "":
        return None
    return parse_int(value, "count", 1, MAX_CANCEL_COUNT)


async def cancel_runs(request: Request) -> Response:
    svc, account_id = await account(request)
    body = await read_json(request, svc.settings.max_body_size)
    params = request.query_params
    run_filter = filters.run_filter(params)
    if body is not None and not any(k in params for k in ("workflowRunIds", "workflowUrl")):
        run_filter = _legacy_filter(body)
    limit = None if run_filter.run_ids else _count(params)
    canceled = await workflows.cancel_runs(svc, account_id, run_filter, limit)
    return JSON({"cancelled": canceled})


# -- features Homing does not have yet ------------------------------------------------------


def _missing(feature: str) -> Any:
    async def answer(request: Request) -> Response:
        await account(request)
        raise NotImplementedYet(f"{feature} is not supported by Homing yet")

    answer.__name__ = "not_implemented_" + feature.split()[0].lower().replace("/", "_")
    return answer


trigger = _missing("the /v2/trigger REST API")
