"""Rotate an account's signing keys: the next key becomes current, a new next key is made.

The rotation is announced (`notices.keys_rotated`) so that this node's delivery engine, when it
runs one, signs with the new key at once; other nodes re-read the keys within a second.
"""

from __future__ import annotations

from homing import ids
from homing.actions.context import Services
from homing.models import SigningKeys


async def rotate(svc: Services, account_id: str) -> SigningKeys:
    keys = await svc.storage.rotate_signing_keys(account_id, ids.signing_key())
    svc.notices.keys_rotated.publish(account_id)
    return keys
