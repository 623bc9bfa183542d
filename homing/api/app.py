"""The QStash API: its routes and the entry every request passes first.

`homing.server` mounts these next to the console and the probes; the handlers reach the node's
parts only through `Services` and the use cases in `homing.actions`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from homing.api import (
    dlq,
    events,
    flow_control,
    keys,
    logs,
    messages,
    publish,
    queues,
    schedules,
    url_groups,
    workflow_client,
    workflows,
)
from homing.api.openapi import openapi_document
from homing.web.http import JSON

# Paths whose tail is a destination: a trailing slash there is part of the destination URL.
_DESTINATION_PREFIXES = ("/v2/publish/", "/v2/enqueue/", "/v2/schedules/")


class Entry:
    """What every request passes first.

    * `/v2/queues/` means `/v2/queues` (QStash ignores a trailing slash), except inside a
      destination.

    (`POST /v2/publish/...` and `/v2/enqueue/...` are served before even this, by
    `homing.server.Front` and `publish.serve`.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 4 and path.endswith("/") and path.startswith("/v2/"):
                is_destination = path.startswith(_DESTINATION_PREFIXES) and not (
                    path.startswith("/v2/schedules/") and scope["method"] != "POST"
                )
                if not is_destination or path.count("/") <= 3:
                    scope = dict(scope, path=path[:-1])
        await self.app(scope, receive, send)


async def openapi(request: Request) -> Response:
    return JSON(openapi_document())


ROUTES = [
    Route("/v2/publish/{rest:path}", publish.publish, methods=["POST"]),
    Route("/v2/enqueue/{rest:path}", publish.enqueue, methods=["POST"]),
    Route("/v2/batch", publish.batch, methods=["POST"]),
    Route("/v2/messages/{message_id}", messages.get_message, methods=["GET"]),
    Route("/v2/messages/{message_id}", messages.cancel_message, methods=["DELETE"]),
    Route("/v2/messages", messages.cancel_many, methods=["DELETE"]),
    Route("/v2/dlq", dlq.list_dlq, methods=["GET"]),
    Route("/v2/dlq", dlq.delete_many, methods=["DELETE"]),
    Route("/v2/dlq/retry", dlq.retry_many, methods=["POST"]),
    Route("/v2/dlq/retry/{dlq_id}", dlq.retry_one, methods=["POST"]),
    Route("/v2/dlq/{dlq_id}", dlq.get_dlq, methods=["GET"]),
    Route("/v2/dlq/{dlq_id}", dlq.delete_dlq, methods=["DELETE"]),
    Route("/v2/events", logs.events, methods=["GET"]),
    Route("/v2/logs", logs.logs, methods=["GET"]),
    Route("/v2/keys", keys.get_keys, methods=["GET"]),
    Route("/v2/keys/rotate", keys.rotate_keys, methods=["POST"]),
    Route("/v2/queues", queues.upsert, methods=["POST"]),
    Route("/v2/queues", queues.list_queues, methods=["GET"]),
    Route("/v2/queues/{queue}", queues.get_queue, methods=["GET"]),
    Route("/v2/queues/{queue}", queues.delete_queue, methods=["DELETE"]),
    Route("/v2/queues/{queue}/pause", queues.pause, methods=["POST"]),
    Route("/v2/queues/{queue}/resume", queues.resume, methods=["POST"]),
    Route("/v2/topics", url_groups.list_groups, methods=["GET"]),
    Route("/v2/topics/{group}", url_groups.get_group, methods=["GET"]),
    Route("/v2/topics/{group}", url_groups.delete_group, methods=["DELETE"]),
    Route("/v2/topics/{group}/endpoints", url_groups.upsert_endpoints, methods=["POST"]),
    Route("/v2/topics/{group}/endpoints", url_groups.remove_endpoints, methods=["DELETE"]),
    Route("/v2/schedules", schedules.list_schedules, methods=["GET"]),
    Route("/v2/schedules/{schedule_id}", schedules.get_schedule, methods=["GET"]),
    Route("/v2/schedules/{schedule_id}", schedules.delete_schedule, methods=["DELETE"]),
    Route("/v2/schedules/{schedule_id}/{action}", schedules.pause_resume, methods=["PATCH"]),
    Route("/v2/schedules/{rest:path}", schedules.create_or_pause, methods=["POST"]),
    Route("/v2/flowControl", flow_control.list_keys, methods=["GET"]),
    Route("/v2/flowControl/{rest:path}", flow_control.get_key, methods=["GET"]),
    Route("/v2/flowControl/{rest:path}", flow_control.act, methods=["POST"]),
    Route("/v2/globalParallelism", flow_control.global_parallelism, methods=["GET"]),
    Route("/v2/workflows/runs", workflows.cancel_runs, methods=["DELETE"]),
    Route("/v2/workflows/runs/{run_id}", workflows.get_steps, methods=["GET"]),
    Route("/v2/workflows/runs/{run_id}", workflows.end_run, methods=["DELETE"]),
    Route("/v2/wait/{rest:path}", events.wait_for_event, methods=["POST"]),
    Route("/v2/notify/{rest:path}", events.notify, methods=["POST"]),
    Route("/v2/waiters/{rest:path}", events.waiters, methods=["GET"]),
    Route("/v2/workflows/events", workflow_client.logs, methods=["GET"]),
    Route("/v2/workflows/logs", workflow_client.logs, methods=["GET"]),
    Route("/v2/workflows/dlq", workflow_client.list_entries, methods=["GET"]),
    Route("/v2/workflows/dlq", workflow_client.delete_many, methods=["DELETE"]),
    Route("/v2/workflows/dlq/resume", workflow_client.resume, methods=["POST"]),
    Route("/v2/workflows/dlq/restart", workflow_client.restart, methods=["POST"]),
    Route("/v2/workflows/dlq/resume/{dlq_id}", workflow_client.resume, methods=["POST"]),
    Route("/v2/workflows/dlq/restart/{dlq_id}", workflow_client.restart, methods=["POST"]),
    Route("/v2/workflows/dlq/callback/{dlq_id}", workflow_client.retry_callback, methods=["POST"]),
    Route("/v2/workflows/dlq/{dlq_id}", workflow_client.get_entry, methods=["GET"]),
    Route("/v2/workflows/dlq/{dlq_id}", workflow_client.delete_one, methods=["DELETE"]),
    Route("/v2/trigger/{rest:path}", workflows.trigger, methods=["POST"]),
    Route("/v2/batch/trigger", workflows.trigger, methods=["POST"]),
    Route(
        # No token: the URL is the capability (context.createWebhook).
        "/v2/workflows/hooks/{user_id}/{run_id}/{rest:path}",
        events.webhook,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    ),
    Route("/openapi.json", openapi, methods=["GET"]),
]
