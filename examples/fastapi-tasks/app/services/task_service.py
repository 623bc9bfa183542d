"""Everything the app hands to QStash: immediate, delayed, scheduled, fan-out and queued work."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from qstash import AsyncQStash

from app.config import public_url

Operation = Literal["export", "analyze", "cleanup"]

USER_EVENTS_GROUP = "user-events"
USER_EVENT_ENDPOINTS = ("analytics", "notifications", "crm")
ONBOARDING_QUEUE = "onboarding"
DAILY_CLEANUP_SCHEDULE = "daily-cleanup"


class UserDataPayload(TypedDict, total=False):
    userId: str
    operation: Operation
    fail: bool


def task_url(name: str) -> str:
    return public_url(f"/api/tasks/{name}")


class TaskService:
    def __init__(self, client: AsyncQStash) -> None:
        self.client = client

    async def process_user_data(
        self, payload: UserDataPayload, *, retries: int | None = None
    ) -> dict[str, str]:
        """Run as soon as possible."""
        res: Any = await self.client.message.publish_json(
            url=task_url("process-user-data"), body=payload, retries=retries
        )
        return {"messageId": res.message_id}

    async def process_user_data_later(
        self, payload: UserDataPayload, delay_seconds: int, *, retries: int | None = None
    ) -> dict[str, str]:
        """Run after `delay_seconds`."""
        res: Any = await self.client.message.publish_json(
            url=task_url("process-user-data"),
            body=payload,
            delay=f"{delay_seconds}s",
            retries=retries,
        )
        return {"messageId": res.message_id}

    async def schedule_daily_cleanup(self, cron: str = "0 2 * * *") -> dict[str, str]:
        """Every night at 02:00 UTC; creating it again replaces it (fixed schedule id)."""
        schedule_id = await self.client.schedule.create_json(
            schedule_id=DAILY_CLEANUP_SCHEDULE,
            destination=task_url("daily-cleanup"),
            cron=cron,
            body={"scope": "expired-sessions"},
        )
        return {"scheduleId": schedule_id}

    async def cancel_daily_cleanup(self) -> None:
        await self.client.schedule.delete(DAILY_CLEANUP_SCHEDULE)

    async def publish_user_event(self, event: dict[str, str]) -> list[dict[str, str]]:
        """Fan out one event to every endpoint of the `user-events` URL group."""
        await self.client.url_group.upsert_endpoints(
            url_group=USER_EVENTS_GROUP,
            endpoints=[
                {"name": name, "url": task_url(f"user-events/{name}")}
                for name in USER_EVENT_ENDPOINTS
            ],
        )
        results: Any = await self.client.message.publish_json(
            url_group=USER_EVENTS_GROUP, body=event
        )
        return [{"messageId": r.message_id, "url": r.url} for r in results]

    async def start_onboarding(self, user_id: str, steps: int) -> dict[str, list[str]]:
        """Enqueue `steps` onboarding steps; the queue delivers them one at a time, in order."""
        await self.client.queue.upsert(ONBOARDING_QUEUE, parallelism=1)
        message_ids = []
        for step in range(1, steps + 1):
            res: Any = await self.client.message.enqueue_json(
                queue=ONBOARDING_QUEUE,
                url=task_url("onboarding-step"),
                body={"userId": user_id, "step": step, "total": steps},
            )
            message_ids.append(res.message_id)
        return {"messageIds": message_ids}
