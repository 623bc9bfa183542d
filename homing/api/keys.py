"""Signing keys (spec 12.8, 12.9)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from homing import ids
from homing.api.context import account
from homing.api.http import JSON


async def get_keys(request: Request) -> Response:
    svc, account_id = await account(request)
    keys = await svc.storage.signing_keys(account_id)
    return JSON({"current": keys.current, "next": keys.next})


async def rotate_keys(request: Request) -> Response:
    svc, account_id = await account(request)
    keys = await svc.storage.rotate_signing_keys(account_id, ids.signing_key())
    svc.engine.keys.forget(account_id)
    return JSON({"current": keys.current, "next": keys.next})
