"""Accounts, API tokens and signing keys on PostgreSQL (mixed into PostgresStorage).

Several nodes seed the same accounts when they start together: every write here is an upsert
or a single atomic statement, so doing it twice, or at once, leaves one account and one token.
"""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]

from homing.errors import InvalidRequest, StorageUnavailable
from homing.models import Principal, SigningKeys, TokenInfo
from homing.storage import codec
from homing.storage.codec import hash_token
from homing.storage.postgres.messages import Q
from homing.storage.postgres.pool import Conn, Database


class AccountStore:
    """The accounts, tokens and keys part of the storage contract."""

    _db: Database

    async def ensure_account(
        self,
        account_id: str,
        *,
        now_ms: int,
        keys: SigningKeys,
        token: str | None = None,
        reset_keys: bool = False,
    ) -> None:
        async def run(conn: Conn) -> None:
            await conn.execute(Q["ensure_account"], account_id, now_ms, keys.current, keys.next)
            if reset_keys:
                await conn.execute(Q["reset_keys"], account_id, keys.current, keys.next)
            if token is not None:
                digest = hash_token(token)
                token_id = codec.token_id(digest)
                await conn.execute(Q["put_token"], token_id, account_id, digest, now_ms)

        await self._db.run(run)

    async def authenticate(self, token: str) -> Principal | None:
        row = await self._db.fetchrow(Q["token_principal"], hash_token(token))
        return None if row is None else Principal(row[0], bool(row[1]), row[2])

    async def token_active(self, token_id: str) -> bool:
        row = await self._db.fetchrow(Q["token_active"], token_id)
        return row is not None

    async def signing_keys(self, account_id: str) -> SigningKeys:
        row = await self._db.fetchrow(Q["account_keys"], account_id)
        if row is None:
            raise StorageUnavailable(f"account {account_id!r} has no signing keys")
        return SigningKeys(row[0], row[1])

    async def rotate_signing_keys(self, account_id: str, new_next: str) -> SigningKeys:
        row = await self._db.fetchrow(Q["rotate_keys"], account_id, new_next)
        if row is None:
            raise StorageUnavailable(f"account {account_id!r} has no signing keys")
        return SigningKeys(row[0], row[1])

    async def create_token(
        self,
        account_id: str,
        token: str,
        *,
        name: str | None,
        read_only: bool,
        now_ms: int,
        new_keys: SigningKeys,
    ) -> TokenInfo:
        digest = hash_token(token)
        token_id = codec.token_id(digest)
        taken = InvalidRequest(f"a token named {name!r} already exists")

        async def run(conn: Conn) -> TokenInfo:
            if name is not None and await conn.fetchval(Q["token_name_taken"], name):
                raise taken
            await conn.execute(
                Q["ensure_account"], account_id, now_ms, new_keys.current, new_keys.next
            )
            try:
                await conn.execute(
                    Q["create_token"], token_id, account_id, digest, name, read_only, now_ms
                )
            except asyncpg.exceptions.UniqueViolationError as exc:
                # Another node created a token of this name since we looked.
                raise taken from exc
            return TokenInfo(token_id, account_id, name, read_only, now_ms)

        return await self._db.run(run)

    async def list_tokens(self) -> list[TokenInfo]:
        rows = await self._db.fetch(Q["list_tokens"])
        return [TokenInfo(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def revoke_token(self, id_or_name: str, *, now_ms: int) -> TokenInfo | None:
        row = await self._db.fetchrow(Q["revoke_token"], now_ms, id_or_name)
        return None if row is None else TokenInfo(row[0], row[1], row[2], row[3], row[4], now_ms)

    async def list_accounts(self) -> list[str]:
        return [r[0] for r in await self._db.fetch(Q["list_accounts"])]
