"""Signing keys: `GET /v2/keys` and `POST /v2/keys/rotate`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from homing.actions import keys as signing_keys
from homing.api.context import account
from homing.web.http import JSON


async def get_keys(request: Request) -> Response:
    svc, account_id = await account(request)
    keys = await svc.storage.signing_keys(account_id)
    return JSON({"current": keys.current, "next": keys.next})


async def rotate_keys(request: Request) -> Response:
    svc, account_id = await account(request)
    keys = await signing_keys.rotate(svc, account_id)
    return JSON({"current": keys.current, "next": keys.next})
