"""The FastAPI app: task handlers, trigger routes and (optionally) the test log."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from qstash import AsyncQStash

from app import test_log
from app.config import settings
from app.routes import tasks, trigger
from app.services.task_service import TaskService

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    client = AsyncQStash(settings.qstash_token, base_url=settings.qstash_url)
    app.state.task_service = TaskService(client)
    logging.getLogger("fastapi-tasks").info("public URL %s", settings.app_url)
    yield


app = FastAPI(title="fastapi-tasks", lifespan=lifespan)
app.include_router(tasks.router)
app.include_router(trigger.router)


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


if settings.test_log:

    @app.get("/__test/log")
    async def read_log() -> dict[str, Any]:
        return {"entries": test_log.entries}

    @app.delete("/__test/log")
    async def clear_log() -> dict[str, bool]:
        test_log.entries.clear()
        return {"ok": True}
