"""A server on SQLite remembers the tokens it authenticated, and forgets them at once when a
token changes, whichever process changed it (the tokens CLI opens the store beside the server).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from homing.models import SigningKeys
from homing.storage.sqlite.backend import SqliteStorage

T0 = 1_700_000_000_000
KEYS = SigningKeys("sig_current", "sig_next")


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    store = SqliteStorage(str(tmp_path / "homing.db"), synchronous="NORMAL")
    await store.open()
    yield store
    await store.close()


@pytest_asyncio.fixture
async def admin(server: SqliteStorage) -> AsyncIterator[SqliteStorage]:
    """`homing tokens ...` beside the running server: another connection, another cache."""
    store = SqliteStorage(server.path, synchronous="NORMAL", exclusive=False)
    await store.open()
    yield store
    await store.close()


async def _remembered(server: SqliteStorage, token: str) -> None:
    """Authenticate `token` and make sure the answer came from memory the second time."""
    assert await server.authenticate(token) is not None
    inline, server._inline = server._inline, None  # any read of the store now fails
    try:
        assert await server.authenticate(token) is not None
    finally:
        server._inline = inline


@pytest.mark.asyncio
async def test_a_token_revoked_by_another_process_is_refused_on_the_next_request(
    server: SqliteStorage, admin: SqliteStorage
) -> None:
    await admin.create_token("acct", "tok-ci", name="ci", read_only=False, now_ms=T0, new_keys=KEYS)
    await _remembered(server, "tok-ci")

    await admin.revoke_token("ci", now_ms=T0 + 1)

    assert await server.authenticate("tok-ci") is None


@pytest.mark.asyncio
async def test_a_token_moved_to_another_account_is_read_again(
    server: SqliteStorage, admin: SqliteStorage
) -> None:
    await admin.ensure_account("acct_a", now_ms=T0, keys=KEYS, token="tok-seed")
    await _remembered(server, "tok-seed")

    # A seeded token given to another account (a restart with other seeds does this)
    await admin.ensure_account("acct_b", now_ms=T0, keys=KEYS, token="tok-seed")

    principal = await server.authenticate("tok-seed")
    assert principal is not None and principal.account_id == "acct_b"


@pytest.mark.asyncio
async def test_unknown_tokens_are_never_remembered(
    server: SqliteStorage, admin: SqliteStorage
) -> None:
    assert await server.authenticate("tok-later") is None
    await admin.create_token(
        "acct", "tok-later", name=None, read_only=True, now_ms=T0, new_keys=KEYS
    )
    principal = await server.authenticate("tok-later")
    assert principal is not None and principal.read_only


@pytest.mark.asyncio
async def test_without_a_readable_stamp_nothing_is_remembered(
    server: SqliteStorage, tmp_path: Path
) -> None:
    await server.create_token("acct", "tok-x", name=None, read_only=False, now_ms=T0, new_keys=KEYS)
    # The stamp's folder cannot be searched: whether a token changed is unknown
    server._tokens.path = str(tmp_path / "not-a-folder" / "x")
    (tmp_path / "not-a-folder").write_text("")
    assert await server.authenticate("tok-x") is not None
    inline, server._inline = server._inline, None
    try:
        with pytest.raises(Exception, match="closed"):
            await server.authenticate("tok-x")
    finally:
        server._inline = inline
