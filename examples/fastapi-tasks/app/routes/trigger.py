"""Routes the front end calls; each one hands work to QStash/Homing and returns at once."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, Field

from app.dependencies import get_task_service
from app.services.task_service import TaskService, UserDataPayload

router = APIRouter(prefix="/api/trigger")
Service = Annotated[TaskService, Depends(get_task_service)]


class UserData(BaseModel):
    userId: str = Field(min_length=1)
    operation: Literal["export", "analyze", "cleanup"]
    fail: bool | None = None
    retries: int | None = Field(default=None, ge=0, le=20)

    def payload(self) -> UserDataPayload:
        payload: UserDataPayload = {"userId": self.userId, "operation": self.operation}
        if self.fail is not None:
            payload["fail"] = self.fail
        return payload


class DelayedUserData(UserData):
    delay: int = Field(default=60, ge=1)  # seconds


class ScheduleRequest(BaseModel):
    cron: str | None = None  # override of "0 2 * * *", e.g. for tests


class UserEvent(BaseModel):
    type: str = "user.signed_up"
    userId: str = Field(min_length=1)


class Onboarding(BaseModel):
    userId: str = Field(min_length=1)
    steps: int = Field(default=3, ge=1, le=20)


@router.post("/immediate", status_code=202)
async def immediate(data: UserData, service: Service) -> dict[str, str]:
    return await service.process_user_data(data.payload(), retries=data.retries)


@router.post("/delayed", status_code=202)
async def delayed(data: DelayedUserData, service: Service) -> dict[str, str]:
    return await service.process_user_data_later(data.payload(), data.delay, retries=data.retries)


@router.post("/scheduled", status_code=201)
async def scheduled(
    service: Service, data: Annotated[ScheduleRequest | None, Body()] = None
) -> dict[str, str]:
    if data and data.cron:
        return await service.schedule_daily_cleanup(data.cron)
    return await service.schedule_daily_cleanup()


@router.delete("/scheduled")
async def cancel_scheduled(service: Service) -> dict[str, bool]:
    await service.cancel_daily_cleanup()
    return {"ok": True}


@router.post("/fan-out", status_code=202)
async def fan_out(event: UserEvent, service: Service) -> dict[str, list[dict[str, str]]]:
    return {"messages": await service.publish_user_event(event.model_dump())}


@router.post("/onboarding", status_code=202)
async def onboarding(data: Onboarding, service: Service) -> dict[str, list[str]]:
    return await service.start_onboarding(data.userId, data.steps)
