"""Shared dependencies: the QStash client and the signature check for task routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, HTTPException, Request
from qstash import Receiver
from qstash.errors import SignatureError

from app.config import public_url, settings
from app.services.task_service import TaskService

receiver = Receiver(
    current_signing_key=settings.current_signing_key,
    next_signing_key=settings.next_signing_key,
)


async def verify_signature(
    request: Request,
    upstash_signature: Annotated[str | None, Header()] = None,
) -> None:
    """Reject requests not signed by QStash (or Homing) with 401.

    The signature covers the raw body and the URL the message was published to. The URL is
    rebuilt from APP_URL rather than taken from the Host header, so verification also works
    behind a proxy or tunnel.
    """
    if not upstash_signature:
        raise HTTPException(401, "missing Upstash-Signature header")
    body = await request.body()  # cached by Starlette; the handler can still read the body
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        receiver.verify(
            signature=upstash_signature, body=body.decode("utf-8"), url=public_url(path)
        )
    except (SignatureError, UnicodeDecodeError) as e:
        raise HTTPException(401, "invalid signature") from e


def get_task_service(request: Request) -> TaskService:
    service: TaskService = request.app.state.task_service
    return service
