"""The console sub-application (placeholder until the console lands)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route


async def overview(request: Request) -> Response:
    return HTMLResponse("<h1>Homing</h1>")


def create_console() -> Starlette:
    return Starlette(routes=[Route("/", overview)])
