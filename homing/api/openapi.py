"""The OpenAPI 3.1 document served at `/openapi.json`, describing Homing's API as it behaves."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from homing import __version__

_HEADERS = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}
_ERROR = {
    "description": "Error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}
_PUBLISH_ITEM = {
    "type": "object",
    "required": ["messageId"],
    "properties": {
        "messageId": {"type": "string"},
        "url": {"type": "string"},
        "deduplicated": {"type": "boolean"},
    },
}
_MESSAGE = {
    "type": "object",
    "required": ["messageId", "url", "method", "maxRetries", "notBefore", "createdAt"],
    "properties": {
        "messageId": {"type": "string"},
        "url": {"type": "string"},
        "method": {"type": "string"},
        "header": _HEADERS,
        "body": {"type": "string"},
        "bodyBase64": {"type": "string"},
        "maxRetries": {"type": "integer"},
        "notBefore": {"type": "integer"},
        "createdAt": {"type": "integer"},
        "topicName": {"type": "string"},
        "endpointName": {"type": "string"},
        "queueName": {"type": "string"},
        "scheduleId": {"type": "string"},
        "callback": {"type": "string"},
        "failureCallback": {"type": "string"},
        "retryDelayExpression": {"type": "string"},
        "callerIP": {"type": "string"},
        "label": {"type": "string"},
        "labels": {"type": "array", "items": {"type": "string"}},
        "flowControlKey": {"type": "string"},
        "parallelism": {"type": "integer"},
        "rate": {"type": "integer"},
        "period": {"type": "integer"},
    },
}
_DLQ_MESSAGE = {
    "allOf": [
        _MESSAGE,
        {
            "type": "object",
            "required": ["dlqId", "responseStatus"],
            "properties": {
                "dlqId": {"type": "string"},
                "responseStatus": {"type": "integer"},
                "responseHeader": _HEADERS,
                "responseBody": {"type": "string"},
                "responseBodyBase64": {"type": "string"},
            },
        },
    ]
}
_LOG = {
    "type": "object",
    "required": ["time", "messageId", "state", "url"],
    "properties": {
        "time": {"type": "integer"},
        "messageId": {"type": "string"},
        "state": {
            "type": "string",
            "enum": [
                "CREATED",
                "ACTIVE",
                "RETRY",
                "ERROR",
                "DELIVERED",
                "FAILED",
                "CANCEL_REQUESTED",
                "CANCELED",
            ],
        },
        "url": {"type": "string"},
        "error": {"type": "string"},
        "nextDeliveryTime": {"type": "integer"},
        "responseStatus": {"type": "integer"},
    },
}
_QUEUE = {
    "type": "object",
    "required": ["name", "parallelism", "createdAt", "updatedAt", "lag", "paused"],
    "properties": {
        "name": {"type": "string"},
        "parallelism": {"type": "integer"},
        "createdAt": {"type": "integer"},
        "updatedAt": {"type": "integer"},
        "lag": {"type": "integer"},
        "paused": {"type": "boolean"},
    },
}
_GROUP = {
    "type": "object",
    "required": ["name", "createdAt", "updatedAt", "endpoints"],
    "properties": {
        "name": {"type": "string"},
        "createdAt": {"type": "integer"},
        "updatedAt": {"type": "integer"},
        "endpoints": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["url"],
                "properties": {"url": {"type": "string"}, "name": {"type": "string"}},
            },
        },
    },
}
_KEYS = {
    "type": "object",
    "required": ["current", "next"],
    "properties": {"current": {"type": "string"}, "next": {"type": "string"}},
}
_SCHEDULE = {
    "type": "object",
    "required": ["scheduleId", "cron", "destination", "createdAt", "method", "retries", "isPaused"],
    "properties": {
        "scheduleId": {"type": "string"},
        "cron": {"type": "string"},
        "destination": {"type": "string"},
        "createdAt": {"type": "integer"},
        "method": {"type": "string"},
        "retries": {"type": "integer"},
        "isPaused": {"type": "boolean"},
        "header": _HEADERS,
        "body": {"type": "string"},
        "bodyBase64": {"type": "string"},
        "delay": {"type": "integer", "description": "seconds"},
        "timeout": {"type": "integer", "description": "seconds"},
        "callback": {"type": "string"},
        "callbackHeader": _HEADERS,
        "failureCallback": {"type": "string"},
        "failureCallbackHeader": _HEADERS,
        "queueName": {"type": "string"},
        "flowControlKey": {"type": "string"},
        "parallelism": {"type": "integer"},
        "rate": {"type": "integer"},
        "period": {"type": "integer"},
        "retryDelayExpression": {"type": "string"},
        "label": {"type": "string"},
        "labels": {"type": "array", "items": {"type": "string"}},
        "callerIP": {"type": "string"},
        "callerIp": {"type": "string"},
        "lastScheduleTime": {"type": "integer"},
        "nextScheduleTime": {"type": "integer"},
        "lastScheduleStates": {
            "type": "object",
            "additionalProperties": {"type": "string", "enum": ["IN_PROGRESS", "SUCCESS", "FAIL"]},
        },
        "error": {"type": "string"},
    },
}
_FLOW_KEY = {
    "type": "object",
    "required": [
        "flowControlKey",
        "waitListSize",
        "parallelismMax",
        "parallelismCount",
        "rateMax",
        "rateCount",
        "ratePeriod",
        "ratePeriodStart",
        "isPaused",
        "isPinnedParallelism",
        "isPinnedRate",
    ],
    "properties": {
        "flowControlKey": {"type": "string"},
        "waitListSize": {"type": "integer"},
        "parallelismMax": {"type": "integer", "description": "0 when not configured"},
        "parallelismCount": {"type": "integer"},
        "rateMax": {"type": "integer", "description": "0 when not configured"},
        "rateCount": {"type": "integer"},
        "ratePeriod": {"type": "integer", "description": "seconds"},
        "ratePeriodStart": {"type": "integer", "description": "Unix seconds"},
        "isPaused": {"type": "boolean"},
        "isPinnedParallelism": {"type": "boolean"},
        "isPinnedRate": {"type": "boolean"},
    },
}
_GLOBAL_PARALLELISM = {
    "type": "object",
    "required": ["parallelismMax", "parallelismCount"],
    "properties": {
        "parallelismMax": {"type": "integer"},
        "parallelismCount": {"type": "integer"},
    },
}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    base = {"400": _ERROR, "401": _ERROR}
    return {"summary": summary, "responses": {**responses, **base}, **extra}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema or {"type": "string"}}


def _header(
    name: str, schema: dict[str, Any] | None = None, *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "schema": schema or {"type": "string"},
    }


_PAGING = [_query("cursor"), _query("count", {"type": "integer", "minimum": 1})]
_NAME = {"type": "string", "pattern": "^[A-Za-z0-9._-]+$"}
# The message configuration headers a schedule stores as the template of what it publishes
# (the `Upstash-*` configuration headers). `Upstash-Forward-<Name>` and
# `Upstash-Callback-Forward-<Name>` are accepted too; a pattern of header names cannot be
# written as an OpenAPI parameter.
_SCHEDULE_HEADERS = [
    _header("Upstash-Cron", required=True),
    _header("Upstash-Schedule-Id", _NAME),
    _header("Upstash-Queue-Name", _NAME),
    _header(
        "Upstash-Method", {"type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]}
    ),
    _header("Upstash-Retries", {"type": "integer", "minimum": 0}),
    _header("Upstash-Retry-Delay"),
    _header("Upstash-Delay"),
    _header("Upstash-Timeout"),
    _header("Upstash-Callback"),
    _header("Upstash-Failure-Callback"),
    _header("Upstash-Label"),
    _header("Upstash-Flow-Control-Key"),
    _header("Upstash-Flow-Control-Value"),
    _header("Upstash-Redact-Fields"),
]
_FLOW_PIN = [
    _query(name, {"type": "integer", "minimum": 1}) for name in ("parallelism", "rate")
] + [_query("period", {"type": "integer", "minimum": 1, "maximum": 7 * 86400})]
_FLOW_UNPIN = [_query(name, {"type": "boolean"}) for name in ("parallelism", "rate")]


_STEP_LIST = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["messageId", "body", "callType"],
        "properties": {
            "messageId": {"type": "string"},
            "body": {"type": "string", "description": "standard base64, padded"},
            "callType": {"type": "string"},
        },
    },
}
_CANCELLED = {
    "type": "object",
    "required": ["cancelled"],
    "properties": {"cancelled": {"type": "integer"}},
}


_STR = {"type": "string"}
_HEADERS = {"type": "object", "additionalProperties": {"type": "array", "items": _STR}}
_WAITER = {
    "type": "object",
    "properties": {
        "url": _STR,
        "deadline": {"type": "integer", "description": "Unix seconds"},
        "headers": _HEADERS,
        "timeoutUrl": _STR,
        "timeoutHeaders": _HEADERS,
        "workflowRunId": _STR,
    },
}
# Event ids: at most 512 characters (`homing.workflow.waits.MAX_EVENT_ID`).
_EVENT_ID = {
    "name": "eventId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 512},
}
_NOTIFIED = {
    "type": "object",
    "properties": {"waiter": _WAITER, "messageId": _STR, "error": _STR},
}


def _not_yet(summary: str, status: str = "501") -> dict[str, Any]:
    return _op(summary + " (not supported by Homing yet)", {status: _ERROR})


_OBJECT: dict[str, Any] = {"type": "object"}
_WF_DLQ_QUERY = [
    _query(name)
    for name in (
        "dlqIds",
        "workflowRunId",
        "workflowUrl",
        "workflowCreatedAt",
        "label",
        "callerIp",
        "flowControlKey",
        "cursor",
        "count",
    )
]


def _logs_op() -> dict[str, Any]:
    return _op(
        "Workflow run logs, newest first, with steps",
        {"200": _json(_OBJECT)},
        parameters=[
            _query(name)
            for name in (
                "workflowRunId",
                "workflowUrl",
                "workflowCreatedAt",
                "state",
                "label",
                "callerIp",
                "flowControlKey",
                "fromDate",
                "toDate",
                "cursor",
                "count",
            )
        ],
    )


def _workflow_paths() -> dict[str, Any]:
    """Upstash Workflow: the run end, cancel and step list; the features not there yet."""
    run_id = _path_param("workflowRunId")
    dlq_id = _path_param("dlqId")
    paths: dict[str, Any] = {
        "/v2/workflows/runs": {
            "delete": _op(
                "Cancel workflow runs (by ids, URL prefix, filters, or all)",
                {"200": _json(_CANCELLED)},
                parameters=[
                    _query("workflowRunIds"),
                    _query("workflowUrl"),
                    _query("workflowUrlExactMatch", {"type": "boolean"}),
                    _query("label"),
                    _query("fromDate", {"type": "integer"}),
                    _query("toDate", {"type": "integer"}),
                    _query("callerIp"),
                    _query("flowControlKey"),
                    _query("count", {"type": "integer", "minimum": 1}),
                ],
            )
        },
        "/v2/workflows/runs/{workflowRunId}": {
            "get": _op(
                "The step list of an active workflow run",
                {"200": _json(_STEP_LIST), "404": _ERROR},
                parameters=[run_id],
            ),
            "delete": _op(
                "End a workflow run (cancel=false, body = result) or cancel it (cancel=true)",
                {"200": _json({"type": "object"}), "404": _ERROR},
                parameters=[run_id, _query("cancel", {"type": "boolean"})],
            ),
        },
        "/v2/wait/{eventId}": {
            "post": _op(
                "Register a waiter of a workflow run (context.waitForEvent)",
                {"200": _json({"type": "object", "properties": {"messageId": _STR}})},
                parameters=[_EVENT_ID],
            )
        },
        "/v2/notify/{eventId}": {
            "post": _op(
                "Notify every waiter of an event (none: the event is dropped); the body is the "
                "event data. Two segments whose first is a run id (wfr_...) notify that run "
                "only, and keep the event for its next wait when it does not wait yet",
                {"200": _json({"type": "array", "items": _NOTIFIED})},
                parameters=[_EVENT_ID],
            )
        },
        "/v2/waiters/{eventId}": {
            "get": _op(
                "The waiters of an event (deadline in Unix seconds)",
                {"200": _json({"type": "array", "items": _WAITER})},
                parameters=[_EVENT_ID],
            )
        },
        "/v2/workflows/events": {"get": _logs_op()},
        "/v2/workflows/logs": {"get": _logs_op()},
        "/v2/workflows/dlq": {
            "get": _op(
                "List the workflow DLQ (also GET /v2/dlq?source=workflow)",
                {"200": _json(_OBJECT)},
                parameters=_WF_DLQ_QUERY,
            ),
            "delete": _op(
                "Delete workflow DLQ entries (dlqIds, filters, or all)",
                {"200": _json(_OBJECT)},
                parameters=_WF_DLQ_QUERY,
            ),
        },
        "/v2/workflows/dlq/resume": {
            "post": _op(
                "Resume failed runs under new run ids, after their last good step",
                {"200": _json(_OBJECT)},
                parameters=_WF_DLQ_QUERY,
            )
        },
        "/v2/workflows/dlq/restart": {
            "post": _op(
                "Restart failed runs under new run ids, from their initial payload",
                {"200": _json(_OBJECT)},
                parameters=_WF_DLQ_QUERY,
            )
        },
        "/v2/workflows/dlq/resume/{dlqId}": {
            "post": _op(
                "Resume one failed run", {"200": _json(_OBJECT), "404": _ERROR}, parameters=[dlq_id]
            )
        },
        "/v2/workflows/dlq/restart/{dlqId}": {
            "post": _op(
                "Restart one failed run",
                {"200": _json(_OBJECT), "404": _ERROR},
                parameters=[dlq_id],
            )
        },
        "/v2/workflows/dlq/callback/{dlqId}": {
            "post": _op(
                "Send a failed run's failure callback again",
                {"200": _json(_OBJECT), "404": _ERROR},
                parameters=[dlq_id],
            )
        },
        "/v2/workflows/dlq/{dlqId}": {
            "get": _op(
                "Get a workflow DLQ entry",
                {"200": _json(_OBJECT), "404": _ERROR},
                parameters=[dlq_id],
            ),
            "delete": _op(
                "Delete a workflow DLQ entry",
                {"200": _json(_OBJECT), "404": _ERROR},
                parameters=[dlq_id],
            ),
        },
        "/v2/trigger/{workflowUrl}": {"post": _not_yet("Trigger a workflow run")},
        "/v2/batch/trigger": {"post": _not_yet("Trigger workflow runs")},
        "/v2/workflows/hooks/{userId}/{workflowRunId}/{eventId}": {
            method: {
                "summary": "Call a workflow webhook (context.createWebhook): no token, the URL "
                "is the capability; the call is the run's event, kept for its next wait",
                "security": [],
                "responses": {"200": _json({"type": "object"}), "400": _ERROR, "404": _ERROR},
                "parameters": [_path_param("userId"), _path_param("workflowRunId"), _EVENT_ID],
            }
            for method in ("get", "post", "put", "patch", "delete")
        },
    }
    for path, item in paths.items():
        names = re.findall(r"\{(\w+)\}", path)
        for op in item.values():
            op.setdefault("parameters", [_path_param(n) for n in names])
    return paths


@cache
def openapi_document() -> dict[str, Any]:
    cursor_obj = {"cursor": {"type": "string"}}
    paths: dict[str, Any] = {
        "/v2/publish/{destination}": {
            "post": _op(
                "Publish a message to a URL or URL group",
                {
                    "201": _json(
                        {"oneOf": [_PUBLISH_ITEM, {"type": "array", "items": _PUBLISH_ITEM}]}
                    ),
                    "202": _json(
                        {"oneOf": [_PUBLISH_ITEM, {"type": "array", "items": _PUBLISH_ITEM}]}
                    ),
                    "404": _ERROR,
                    "413": _ERROR,
                },
                parameters=[_path_param("destination")],
                requestBody={"content": {"*/*": {"schema": {"type": "string"}}}},
            )
        },
        "/v2/enqueue/{queueName}/{destination}": {
            "post": _op(
                "Enqueue a message into a queue",
                {"201": _json(_PUBLISH_ITEM), "202": _json(_PUBLISH_ITEM), "404": _ERROR},
                parameters=[_path_param("queueName"), _path_param("destination")],
            )
        },
        "/v2/batch": {
            "post": _op(
                "Publish several messages",
                {"201": _json({"type": "array"}), "202": _json({"type": "array"}), "404": _ERROR},
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["destination"],
                                    "properties": {
                                        "destination": {"type": "string"},
                                        "headers": {"type": "object"},
                                        "body": {"type": ["string", "null"]},
                                        "queue": {"type": ["string", "null"]},
                                    },
                                },
                            }
                        }
                    },
                },
            )
        },
        "/v2/messages/{messageId}": {
            "get": _op(
                "Get a message",
                {"200": _json(_MESSAGE), "404": _ERROR},
                parameters=[_path_param("messageId")],
            ),
            "delete": _op(
                "Cancel a message",
                {
                    "200": _json(
                        {"type": "object", "properties": {"cancelled": {"type": "integer"}}}
                    ),
                    "404": _ERROR,
                },
                parameters=[_path_param("messageId")],
            ),
        },
        "/v2/messages": {
            "delete": _op(
                "Cancel many messages",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["cancelled"],
                            "properties": {"cancelled": {"type": "integer"}},
                        }
                    )
                },
            ),
        },
        "/v2/dlq": {
            "get": _op(
                "List the dead-letter queue",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["messages"],
                            "properties": {
                                "messages": {"type": "array", "items": _DLQ_MESSAGE},
                                **cursor_obj,
                            },
                        }
                    )
                },
                parameters=_PAGING,
            ),
            "delete": _op(
                "Delete many DLQ entries",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["deleted"],
                            "properties": {"deleted": {"type": "integer"}, **cursor_obj},
                        }
                    )
                },
            ),
        },
        "/v2/dlq/{dlqId}": {
            "get": _op(
                "Get a DLQ entry",
                {"200": _json(_DLQ_MESSAGE), "404": _ERROR},
                parameters=[_path_param("dlqId")],
            ),
            "delete": _op(
                "Delete a DLQ entry",
                {"200": _json({"type": "object"}), "404": _ERROR},
                parameters=[_path_param("dlqId")],
            ),
        },
        "/v2/dlq/retry": {
            "post": _op(
                "Retry DLQ entries",
                {
                    "201": _json(
                        {
                            "type": "object",
                            "required": ["responses"],
                            "properties": {"responses": {"type": "array"}, **cursor_obj},
                        }
                    )
                },
            ),
        },
        "/v2/dlq/retry/{dlqId}": {
            "post": _op(
                "Retry one DLQ entry",
                {"201": _json(_PUBLISH_ITEM), "404": _ERROR},
                parameters=[_path_param("dlqId")],
            ),
        },
        "/v2/events": {
            "get": _op(
                "List log entries",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["events"],
                            "properties": {
                                "events": {"type": "array", "items": _LOG},
                                **cursor_obj,
                            },
                        }
                    )
                },
                parameters=_PAGING,
            ),
        },
        "/v2/logs": {
            "get": _op(
                "List log entries",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["logs", "events"],
                            "properties": {
                                "logs": {"type": "array", "items": _LOG},
                                "events": {"type": "array", "items": _LOG},
                                **cursor_obj,
                            },
                        }
                    )
                },
                parameters=_PAGING,
            ),
        },
        "/v2/keys": {"get": _op("Get the signing keys", {"200": _json(_KEYS)})},
        "/v2/keys/rotate": {"post": _op("Rotate the signing keys", {"200": _json(_KEYS)})},
        "/v2/queues": {
            "get": _op("List queues", {"200": _json({"type": "array", "items": _QUEUE})}),
            "post": _op(
                "Create or update a queue", {"200": _json({"type": "object"}), "412": _ERROR}
            ),
        },
        "/v2/queues/{queueName}": {
            "get": _op(
                "Get a queue",
                {"200": _json(_QUEUE), "404": _ERROR},
                parameters=[_path_param("queueName")],
            ),
            "delete": _op(
                "Delete a queue",
                {"200": _json({"type": "object"})},
                parameters=[_path_param("queueName")],
            ),
        },
        "/v2/queues/{queueName}/pause": {
            "post": _op(
                "Pause a queue: it still accepts messages but starts no deliveries",
                {"200": _json({"type": "object"}), "404": _ERROR},
                parameters=[_path_param("queueName")],
            ),
        },
        "/v2/queues/{queueName}/resume": {
            "post": _op(
                "Resume a paused queue",
                {"200": _json({"type": "object"}), "404": _ERROR},
                parameters=[_path_param("queueName")],
            ),
        },
        "/v2/topics": {
            "get": _op("List URL groups", {"200": _json({"type": "array", "items": _GROUP})})
        },
        "/v2/topics/{urlGroupName}": {
            "get": _op(
                "Get a URL group",
                {"200": _json(_GROUP), "404": _ERROR},
                parameters=[_path_param("urlGroupName")],
            ),
            "delete": _op(
                "Delete a URL group",
                {"200": _json({"type": "object"})},
                parameters=[_path_param("urlGroupName")],
            ),
        },
        "/v2/topics/{urlGroupName}/endpoints": {
            "post": _op(
                "Add endpoints",
                {"200": _json({"type": "object"})},
                parameters=[_path_param("urlGroupName")],
            ),
            "delete": _op(
                "Remove endpoints",
                {"200": _json({"type": "object"}), "404": _ERROR},
                parameters=[_path_param("urlGroupName")],
            ),
        },
        "/v2/schedules/{destination}": {
            "post": _op(
                "Create a schedule, or overwrite the one named by Upstash-Schedule-Id",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["scheduleId"],
                            "properties": {"scheduleId": {"type": "string"}},
                        }
                    ),
                    "404": _ERROR,
                    "412": _ERROR,
                    "413": _ERROR,
                },
                parameters=[_path_param("destination"), *_SCHEDULE_HEADERS],
                requestBody={"content": {"*/*": {"schema": {"type": "string"}}}},
            )
        },
        "/v2/schedules": {
            "get": _op("List schedules", {"200": _json({"type": "array", "items": _SCHEDULE})})
        },
        "/v2/schedules/{scheduleId}": {
            "get": _op(
                "Get a schedule",
                {"200": _json(_SCHEDULE), "404": _ERROR},
                parameters=[_path_param("scheduleId")],
            ),
            "delete": _op(
                "Delete a schedule",
                {"200": _json({"type": "object"})},
                parameters=[_path_param("scheduleId")],
            ),
        },
        **{
            f"/v2/schedules/{{scheduleId}}/{action}": {
                method: _op(
                    f"{action.capitalize()} a schedule"
                    + (" (POST is accepted as well as PATCH)" if method == "post" else ""),
                    {"200": _json({"type": "object"}), "404": _ERROR},
                    parameters=[_path_param("scheduleId")],
                )
                for method in ("patch", "post")
            }
            for action in ("pause", "resume")
        },
        "/v2/flowControl": {
            "get": _op(
                "List flow-control keys",
                {"200": _json({"type": "array", "items": _FLOW_KEY})},
                parameters=[_query("search")],
            )
        },
        "/v2/flowControl/{flowControlKey}": {
            "get": _op(
                "Get a flow-control key",
                {"200": _json(_FLOW_KEY), "404": _ERROR},
                parameters=[_path_param("flowControlKey")],
            )
        },
        **{
            f"/v2/flowControl/{{flowControlKey}}/{action}": {
                "post": _op(
                    summary,
                    {"200": _json({"type": "object"}), "404": _ERROR},
                    parameters=[_path_param("flowControlKey"), *query],
                )
            }
            for action, summary, query in (
                ("pause", "Pause a flow-control key", []),
                ("resume", "Resume a flow-control key", []),
                ("pin", "Pin a key's parallelism and/or rate", _FLOW_PIN),
                ("unpin", "Unpin a key's parallelism and/or rate", _FLOW_UNPIN),
                ("resetRate", "Reset a key's rate window", []),
                ("reset", "Reset a key's rate window (legacy name of resetRate)", []),
            )
        },
        "/v2/globalParallelism": {
            "get": _op("Get the global parallelism", {"200": _json(_GLOBAL_PARALLELISM)})
        },
    }
    paths.update(_workflow_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Homing API (QStash v2 compatible)",
            "version": __version__,
            "description": "A self-hosted HTTP message queue, wire-compatible with QStash v2.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
