"""Task handlers: called by QStash/Homing only, so every route checks the signature first."""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from app import test_log
from app.dependencies import verify_signature
from app.services.task_service import USER_EVENT_ENDPOINTS

log = logging.getLogger("fastapi-tasks")
router = APIRouter(prefix="/api/tasks", dependencies=[Depends(verify_signature)])


class ProcessUserData(BaseModel):
    userId: str = Field(min_length=1)
    operation: Literal["export", "analyze", "cleanup"]
    fail: bool = False


class OnboardingStep(BaseModel):
    userId: str = Field(min_length=1)
    step: int = Field(gt=0)
    total: int = Field(gt=0)


def done(request: Request, task: str, body: Any, status: int = 200) -> JSONResponse:
    """Answer `status` and, when the test log is on, record that the task ran."""
    test_log.record(request, task, body, status)
    return JSONResponse({"ok": status == 200, "task": task}, status_code=status)


# Bodies are parsed in the handlers (not as typed parameters) so that the signature check
# always runs first: an unsigned request gets 401 whatever its body.
@router.post("/process-user-data")
async def process_user_data(request: Request) -> JSONResponse:
    try:
        data = ProcessUserData.model_validate_json(await request.body())
    except ValidationError:
        return done(request, "process-user-data", None, 400)
    body = data.model_dump(exclude_defaults=True)
    # A real app would export, analyze or clean up the user's data here.
    if data.operation == "cleanup" and data.fail:
        return done(request, "process-user-data", body, 500)  # QStash retries, then DLQ
    log.info("process-user-data: %s for %s", data.operation, data.userId)
    return done(request, "process-user-data", body)


@router.post("/daily-cleanup")
async def daily_cleanup(request: Request) -> JSONResponse:
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    log.info("daily-cleanup ran")
    return done(request, "daily-cleanup", body)


def _user_event_handler(name: str) -> Any:
    async def handle(request: Request) -> JSONResponse:
        return done(request, f"user-events/{name}", json.loads(await request.body()))

    return handle


for _name in USER_EVENT_ENDPOINTS:
    router.add_api_route(
        f"/user-events/{_name}", _user_event_handler(_name), methods=["POST"], name=_name
    )


@router.post("/onboarding-step")
async def onboarding_step(request: Request) -> JSONResponse:
    try:
        data = OnboardingStep.model_validate_json(await request.body())
    except ValidationError:
        return done(request, "onboarding-step", None, 400)
    log.info("onboarding %s: step %d/%d", data.userId, data.step, data.total)
    return done(request, "onboarding-step", data.model_dump())
