"""The console sub-application, mounted at /console: routes, static files, security headers."""

from __future__ import annotations

import hashlib
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from homing.console.auth import Signer
from homing.console.context import ConsoleState
from homing.console.pages import (
    dlq,
    flow,
    keys,
    messages,
    overview,
    queues,
    runs,
    schedules,
    session,
)
from homing.console.pages import url_groups as groups

STATIC = Path(__file__).parent / "static"

# No inline script or style can run: a payload that slipped past escaping would still be inert.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
    "cross-origin-opener-policy": "same-origin",
}


class SecurityHeaders:
    """Adds the headers above to every console response; pages are never cached (they show
    account data), static files may be."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Mount may hand over the full path or the part below /console, depending on version.
        path = str(scope.get("path", "")).removeprefix(str(scope.get("root_path", "")))
        static = path.startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                if not static:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


ROUTES = [
    Route("/", overview.overview, methods=["GET"]),
    Route("/login", session.login_form, methods=["GET"]),
    Route("/login", session.login, methods=["POST"]),
    Route("/logout", session.logout, methods=["POST"]),
    Route("/api/overview", overview.overview_json, methods=["GET"]),
    Route("/api/cron-preview", schedules.cron_preview, methods=["GET"]),
    Route("/api/keys", keys.reveal, methods=["GET"]),
    Route("/messages", messages.list_messages, methods=["GET"]),
    Route("/messages/{message_id}", messages.show_message, methods=["GET"]),
    Route("/messages/{message_id}/cancel", messages.cancel_message, methods=["POST"]),
    Route("/runs", runs.list_runs, methods=["GET"]),
    Route("/runs/{run_id}", runs.show_run, methods=["GET"]),
    Route("/runs/{run_id}/cancel", runs.cancel_run, methods=["POST"]),
    Route("/runs/{run_id}/notify", runs.notify, methods=["POST"]),
    Route("/dlq", dlq.list_dlq, methods=["GET"]),
    Route("/dlq/retry", dlq.retry, methods=["POST"]),
    Route("/dlq/delete", dlq.delete, methods=["POST"]),
    Route("/dlq/resume", dlq.resume, methods=["POST"]),
    Route("/dlq/restart", dlq.restart, methods=["POST"]),
    Route("/dlq/callback", dlq.retry_callback, methods=["POST"]),
    Route("/schedules", schedules.list_schedules, methods=["GET"]),
    Route("/schedules", schedules.create, methods=["POST"]),
    Route("/schedules/{schedule_id}/pause", schedules.pause, methods=["POST"]),
    Route("/schedules/{schedule_id}/resume", schedules.resume, methods=["POST"]),
    Route("/schedules/{schedule_id}/delete", schedules.delete, methods=["POST"]),
    Route("/queues", queues.list_queues, methods=["GET"]),
    Route("/queues", queues.upsert, methods=["POST"]),
    Route("/queues/{queue}/pause", queues.pause, methods=["POST"]),
    Route("/queues/{queue}/resume", queues.resume, methods=["POST"]),
    Route("/queues/{queue}/delete", queues.delete, methods=["POST"]),
    Route("/url-groups", groups.list_groups, methods=["GET"]),
    Route("/url-groups", groups.add_endpoint, methods=["POST"]),
    Route("/url-groups/{group}/remove", groups.remove_endpoint, methods=["POST"]),
    Route("/url-groups/{group}/delete", groups.delete_group, methods=["POST"]),
    Route("/flow-control", flow.list_keys, methods=["GET"]),
    Route("/flow-control/{action}", flow.act, methods=["POST"]),
    Route("/keys", keys.show_keys, methods=["GET"]),
    Route("/keys/rotate", keys.rotate, methods=["POST"]),
    Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
]


def create_console(secret: str | None = None) -> Starlette:
    """The console app; sessions are signed with a key derived from `secret` (the same on every
    node, so a sign-in holds across nodes and restarts) or with a random one."""
    app = Starlette(routes=ROUTES, middleware=[Middleware(SecurityHeaders)])
    key = hashlib.sha256(b"homing-console|" + secret.encode()).digest() if secret else None
    app.state.console = ConsoleState(signer=Signer(key))
    return app
