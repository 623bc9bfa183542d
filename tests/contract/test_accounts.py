"""Accounts, API tokens and signing keys."""

from __future__ import annotations

import pytest

from homing.errors import InvalidRequest
from homing.models import SigningKeys
from homing.storage.base import Storage
from tests.contract.conftest import ACCOUNT, KEYS, OTHER, T0, gather


async def test_ensure_account_is_idempotent_and_keeps_keys_unless_reset(
    storage: Storage,
) -> None:
    new = SigningKeys("sig_a", "sig_b")
    await storage.ensure_account(ACCOUNT, now_ms=T0 + 1, keys=new)
    assert await storage.signing_keys(ACCOUNT) == KEYS

    await storage.ensure_account(ACCOUNT, now_ms=T0 + 2, keys=new, reset_keys=True)
    assert await storage.signing_keys(ACCOUNT) == new


async def test_nodes_seeding_the_same_account_at_once_make_one(storage: Storage) -> None:
    keys = SigningKeys("sig_1", "sig_2")
    await gather(
        *[storage.ensure_account("acct_seed", now_ms=T0, keys=keys, token="tok") for _ in range(4)]
    )
    assert (await storage.list_accounts()).count("acct_seed") == 1
    principal = await storage.authenticate("tok")
    assert principal is not None and principal.account_id == "acct_seed"


async def test_a_seeded_token_authenticates_its_account(storage: Storage) -> None:
    await storage.ensure_account(ACCOUNT, now_ms=T0, keys=KEYS, token="secret-token")

    principal = await storage.authenticate("secret-token")

    assert principal is not None
    assert (principal.account_id, principal.read_only) == (ACCOUNT, False)
    assert principal.token_id is not None
    assert await storage.authenticate("wrong-token") is None


async def test_rotating_keys_promotes_next_to_current(storage: Storage) -> None:
    rotated = await storage.rotate_signing_keys(ACCOUNT, "sig_newer")
    assert rotated == SigningKeys(KEYS.next, "sig_newer")
    assert await storage.signing_keys(ACCOUNT) == rotated
    assert await storage.signing_keys(OTHER) == KEYS


async def test_created_tokens_are_listed_revoked_and_refused(storage: Storage) -> None:
    # Given a named read-only token for a new account
    info = await storage.create_token(
        "acct_new", "tok-1", name="ci", read_only=True, now_ms=T0 + 1, new_keys=KEYS
    )
    assert (info.account_id, info.name, info.read_only, info.revoked_ms) == (
        "acct_new",
        "ci",
        True,
        None,
    )
    assert "acct_new" in await storage.list_accounts()
    principal = await storage.authenticate("tok-1")
    assert principal is not None and principal.read_only and principal.token_id == info.id
    assert await storage.token_active(info.id)
    assert not await storage.token_active("tok_unknown")

    # Then its name cannot be reused while it is live
    with pytest.raises(InvalidRequest):
        await storage.create_token(
            ACCOUNT, "tok-2", name="ci", read_only=False, now_ms=T0 + 2, new_keys=KEYS
        )

    # When revoked (by name), it no longer authenticates and the name is free again
    revoked = await storage.revoke_token("ci", now_ms=T0 + 3)
    assert revoked is not None and (revoked.id, revoked.revoked_ms) == (info.id, T0 + 3)
    assert await storage.authenticate("tok-1") is None
    assert not await storage.token_active(info.id)
    assert await storage.revoke_token(info.id, now_ms=T0 + 4) is None
    again = await storage.create_token(
        ACCOUNT, "tok-3", name="ci", read_only=False, now_ms=T0 + 5, new_keys=KEYS
    )
    listed = await storage.list_tokens()
    assert [(t.id, t.revoked_ms) for t in listed] == [(info.id, T0 + 3), (again.id, None)]
