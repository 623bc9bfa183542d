"""`/openapi.json` describes every API route the app serves, and nothing it does not serve.

Route paths and OpenAPI paths name their parameters differently (`{rest:path}` and
`{message_id}` in Starlette, `{destination}` and `{messageId}` in the document), so parameters
are compared by position only; a `{name:path}` parameter stands for one or more segments, and
a route parameter the document spells out value by value (`{action}` of the schedule routes is
`/pause` and `/resume`) may match a literal segment.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.routing import Match, Route

from homing.api.app import ROUTES
from homing.api.openapi import openapi_document

# Served on purpose without a description: the document itself. (The probes and the metrics
# path are not API routes: `homing.probes` serves them on every node, whatever its role.)
UNDESCRIBED = {("GET", "/openapi.json")}
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def described() -> set[tuple[str, str]]:
    """(METHOD, path template) of every operation in the document."""
    paths: dict[str, dict[str, Any]] = openapi_document()["paths"]
    return {(m.upper(), path) for path, item in paths.items() for m in item if m in HTTP_METHODS}


def served() -> list[tuple[str, str]]:
    """(METHOD, route path) of every route in ROUTES, one entry per method."""
    out = []
    for route in ROUTES:
        assert isinstance(route, Route)
        assert route.methods is not None
        out += [(m, route.path) for m in sorted(route.methods) if m != "HEAD"]
    return out


def template_pattern(route_path: str) -> re.Pattern[str]:
    """A route path as a pattern over OpenAPI path templates: `{name}` matches one `{param}`
    or literal segment, `{name:path}` matches the rest of the template, whatever its segments."""
    regex = ""
    for part in re.split(r"(\{[^}]*\})", route_path):
        if part.startswith("{"):
            regex += r".+" if part.endswith(":path}") else r"(?:\{[^/{}]+\}|[^/{}]+)"
        else:
            regex += re.escape(part)
    return re.compile(regex)


def example_path(template: str) -> str:
    """An OpenAPI path template with each parameter filled in."""
    return re.sub(r"\{[^/{}]+\}", "example-value", template)


def serving_route(method: str, path: str) -> Route | None:
    for route in ROUTES:
        assert isinstance(route, Route)
        match, _ = route.matches({"type": "http", "method": method, "path": path})
        if match is Match.FULL:
            return route
    return None


@pytest.mark.parametrize(("method", "route_path"), served())
def test_every_served_route_is_described(method: str, route_path: str) -> None:
    if (method, route_path) in UNDESCRIBED:
        return
    pattern = template_pattern(route_path)
    matching = sorted(path for m, path in described() if m == method and pattern.fullmatch(path))
    assert matching, f"{method} {route_path} is served but not described in openapi.py"


def test_the_allow_list_names_only_routes_that_exist() -> None:
    assert set(served()) >= UNDESCRIBED
    assert not {(m, example_path(p)) for m, p in described()} & UNDESCRIBED


@pytest.mark.parametrize(("method", "template"), sorted(described()))
def test_every_described_operation_is_served(method: str, template: str) -> None:
    route = serving_route(method, example_path(template))
    assert route is not None, f"{method} {template} is described but no route serves it"


@pytest.mark.parametrize(("method", "template"), sorted(described()))
def test_path_parameters_are_declared(method: str, template: str) -> None:
    operation = openapi_document()["paths"][template][method.lower()]
    declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
    assert declared == set(re.findall(r"\{([^/{}]+)\}", template))


def test_the_normalisation_tells_routes_apart() -> None:
    assert template_pattern("/v2/schedules/{rest:path}").fullmatch(
        "/v2/schedules/{scheduleId}/pause"
    )
    assert template_pattern("/v2/publish/{rest:path}").fullmatch("/v2/publish/{destination}")
    assert template_pattern("/v2/dlq/{dlq_id}").fullmatch("/v2/dlq/{dlqId}")
    assert template_pattern("/v2/schedules/{schedule_id}/{action}").fullmatch(
        "/v2/schedules/{scheduleId}/pause"
    )
    assert not template_pattern("/v2/dlq/{dlq_id}").fullmatch("/v2/dlq/retry/{dlqId}")
    assert not template_pattern("/v2/queues/{queue}").fullmatch("/v2/queues/{queueName}/pause")
    assert not template_pattern("/v2/schedules/{schedule_id}/{action}").fullmatch(
        "/v2/schedules/{scheduleId}"
    )
