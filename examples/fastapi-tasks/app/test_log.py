"""In-memory record of the task handlers that ran, so end-to-end tests can observe them."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request

from app.config import settings

entries: list[dict[str, Any]] = []


def record(request: Request, task: str, body: Any, status: int = 200) -> None:
    if settings.test_log:
        entries.append(
            {
                "task": task,
                "at": int(time.time() * 1000),
                "status": status,
                "messageId": request.headers.get("Upstash-Message-Id"),
                "retried": int(request.headers.get("Upstash-Retried", "0")),
                "body": body,
            }
        )
