"""The only configuration the app needs, read from the environment.

Point QSTASH_URL at Homing (or at QStash) and nothing else changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    port: int
    app_url: str  # public base URL that Homing/QStash calls back
    qstash_url: str | None
    qstash_token: str
    current_signing_key: str
    next_signing_key: str
    test_log: bool  # exposes GET/DELETE /__test/log; never enable in production


def load_settings() -> Settings:
    port = int(os.environ.get("PORT", "8000"))
    return Settings(
        port=port,
        app_url=os.environ.get("APP_URL") or f"http://localhost:{port}",
        qstash_url=os.environ.get("QSTASH_URL") or None,
        qstash_token=os.environ["QSTASH_TOKEN"],
        current_signing_key=os.environ["QSTASH_CURRENT_SIGNING_KEY"],
        next_signing_key=os.environ["QSTASH_NEXT_SIGNING_KEY"],
        test_log=os.environ.get("TASKS_TEST_LOG", "").lower() in ("1", "true"),
    )


settings = load_settings()


def public_url(path: str) -> str:
    """The public URL of an app path, as published to (and signed by) QStash."""
    return settings.app_url.rstrip("/") + path
