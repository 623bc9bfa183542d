"""URL groups on SQLite (mixed into SqliteStorage): a row per group, its endpoints a JSON
document. Which endpoints a group holds after a change is `homing.url_groups`' decision."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from homing import url_groups
from homing.publish import Endpoint
from homing.storage import codec
from homing.storage.base import UrlGroup
from homing.storage.sqlite.core import Core, Q


def _group(row: Sequence[Any]) -> UrlGroup:
    return UrlGroup(row[0], row[1], row[2], tuple(codec.decode_endpoints(row[3])))


class UrlGroupStore(Core):
    """The URL-group part of the storage contract."""

    async def upsert_endpoints(
        self, account_id: str, group: str, endpoints: Sequence[Endpoint], *, now_ms: int
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            row = conn.execute(Q["lock_url_group"], (account_id, group)).fetchone()
            current = codec.decode_endpoints(row[0]) if row else []
            doc = codec.encode_endpoints(url_groups.merge(current, endpoints))
            conn.execute(Q["set_url_group"], (account_id, group, now_ms, now_ms, doc))

        await self._writer.call(run)

    async def remove_endpoints(
        self, account_id: str, group: str, endpoints: Sequence[Endpoint], *, now_ms: int
    ) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(Q["lock_url_group"], (account_id, group)).fetchone()
            if row is None:
                return False
            kept = url_groups.remove(codec.decode_endpoints(row[0]), endpoints)
            if kept:
                doc = codec.encode_endpoints(kept)
                conn.execute(Q["set_url_group"], (account_id, group, now_ms, now_ms, doc))
            else:
                conn.execute(Q["delete_url_group"], (account_id, group))
            return True

        return await self._writer.call(run)

    async def get_url_group(self, account_id: str, name: str) -> UrlGroup | None:
        row = await self._read(
            lambda c: c.execute(Q["url_groups"], (account_id, name, name)).fetchone()
        )
        return None if row is None else _group(row)

    async def list_url_groups(self, account_id: str) -> list[UrlGroup]:
        rows = await self._read(
            lambda c: c.execute(Q["url_groups"], (account_id, None, None)).fetchall()
        )
        return [_group(r) for r in rows]

    async def delete_url_group(self, account_id: str, name: str) -> None:
        await self._writer.call(lambda c: c.execute(Q["delete_url_group"], (account_id, name)))
