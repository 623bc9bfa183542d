"""Run Homing: uvicorn serving the API, with the engine running inside the app's lifespan."""

from __future__ import annotations

import importlib.util

import uvicorn

from homing.api.app import create_app
from homing.config import Settings


def serve(settings: Settings, *, log_level: str = "info") -> None:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        lifespan="on",
        log_config=None,  # keep the handlers `homing.logs` installed (JSON in serve)
        log_level=log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s) + 2,
    )
    uvicorn.Server(config).run()
