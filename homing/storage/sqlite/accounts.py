"""Accounts, API tokens and signing keys on SQLite (mixed into SqliteStorage).

Tokens are stored as their SHA-256 only. `authenticate` runs on every request: it answers from
`tokens.TokenCache` when it can, else reads on the event-loop thread (`Core._read_now`, an
indexed lookup). Every change to a token tells the cache of every process (`TokenCache.changed`).
"""

from __future__ import annotations

import sqlite3

from homing.errors import InvalidRequest, StorageUnavailable
from homing.models import Principal, SigningKeys, TokenInfo
from homing.storage import codec
from homing.storage.codec import hash_token
from homing.storage.sqlite.core import Core, Q
from homing.storage.sqlite.tokens import TokenCache


class AccountStore(Core):
    """The accounts, tokens and keys part of the storage contract."""

    _tokens: TokenCache

    async def ensure_account(
        self,
        account_id: str,
        *,
        now_ms: int,
        keys: SigningKeys,
        token: str | None = None,
        reset_keys: bool = False,
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(Q["ensure_account"], (account_id, now_ms, keys.current, keys.next))
            if reset_keys:
                conn.execute(Q["reset_keys"], (keys.current, keys.next, account_id))
            if token is not None:
                digest = hash_token(token)
                conn.execute(Q["put_token"], (codec.token_id(digest), account_id, digest, now_ms))

        await self._writer.call(run)
        if token is not None:  # an existing token may have moved to this account
            self._tokens.changed()

    async def authenticate(self, token: str) -> Principal | None:
        digest = hash_token(token)
        known, stamp = self._tokens.get(digest)
        if known is not None:
            return known
        row = await self._read_now(lambda c: c.execute(Q["token_principal"], (digest,)).fetchone())
        if row is None:
            return None
        principal = Principal(row[0], bool(row[1]), row[2])
        self._tokens.put(digest, principal, stamp)
        return principal

    async def token_active(self, token_id: str) -> bool:
        row = await self._read_now(lambda c: c.execute(Q["token_active"], (token_id,)).fetchone())
        return row is not None

    async def signing_keys(self, account_id: str) -> SigningKeys:
        row = await self._read(lambda c: c.execute(Q["account_keys"], (account_id,)).fetchone())
        if row is None:
            raise StorageUnavailable(f"account {account_id!r} has no signing keys")
        return SigningKeys(row[0], row[1])

    async def rotate_signing_keys(self, account_id: str, new_next: str) -> SigningKeys:
        def run(conn: sqlite3.Connection) -> SigningKeys:
            row = conn.execute(Q["rotate_keys"], (new_next, account_id)).fetchone()
            if row is None:
                raise StorageUnavailable(f"account {account_id!r} has no signing keys")
            return SigningKeys(row[0], row[1])

        return await self._writer.call(run)

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

        def run(conn: sqlite3.Connection) -> TokenInfo:
            if name is not None and conn.execute(Q["token_name_taken"], (name,)).fetchone():
                raise InvalidRequest(f"a token named {name!r} already exists")
            conn.execute(Q["ensure_account"], (account_id, now_ms, new_keys.current, new_keys.next))
            conn.execute(
                Q["create_token"], (token_id, account_id, digest, name, int(read_only), now_ms)
            )
            return TokenInfo(token_id, account_id, name, read_only, now_ms)

        return await self._writer.call(run)

    async def list_tokens(self) -> list[TokenInfo]:
        rows = await self._read(lambda c: c.execute(Q["list_tokens"]).fetchall())
        return [TokenInfo(r[0], r[1], r[2], bool(r[3]), r[4], r[5]) for r in rows]

    async def revoke_token(self, id_or_name: str, *, now_ms: int) -> TokenInfo | None:
        def run(conn: sqlite3.Connection) -> TokenInfo | None:
            row = conn.execute(Q["revoke_token"], (now_ms, id_or_name, id_or_name)).fetchone()
            if row is None:
                return None
            return TokenInfo(row[0], row[1], row[2], bool(row[3]), row[4], now_ms)

        revoked = await self._writer.call(run)
        if revoked is not None:
            self._tokens.changed()
        return revoked

    async def list_accounts(self) -> list[str]:
        rows = await self._read(lambda c: c.execute(Q["list_accounts"]).fetchall())
        return [r[0] for r in rows]
