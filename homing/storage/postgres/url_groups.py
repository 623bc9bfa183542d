"""URL groups on PostgreSQL (mixed into PostgresStorage): a row per group, its endpoints a
JSON document, locked while it changes. Which endpoints a group holds after a change is
`homing.url_groups`' decision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homing import url_groups
from homing.publish import Endpoint
from homing.storage import codec
from homing.storage.base import UrlGroup
from homing.storage.postgres.messages import Q
from homing.storage.postgres.pool import Conn, Database


def _group(row: Any) -> UrlGroup:
    return UrlGroup(row[0], row[1], row[2], tuple(codec.decode_endpoints(row[3])))


class UrlGroupStore:
    """The URL-group part of the storage contract."""

    _db: Database

    async def upsert_endpoints(
        self, account_id: str, group: str, endpoints: Sequence[Endpoint], *, now_ms: int
    ) -> None:
        async def run(conn: Conn) -> None:
            await conn.execute(Q["ensure_url_group"], account_id, group, now_ms)
            raw = await conn.fetchval(Q["lock_url_group"], account_id, group)
            doc = codec.encode_endpoints(url_groups.merge(codec.decode_endpoints(raw), endpoints))
            await conn.execute(Q["set_url_group"], account_id, group, doc, now_ms)

        await self._db.run(run)

    async def remove_endpoints(
        self, account_id: str, group: str, endpoints: Sequence[Endpoint], *, now_ms: int
    ) -> bool:
        async def run(conn: Conn) -> bool:
            raw = await conn.fetchval(Q["lock_url_group"], account_id, group)
            if raw is None:
                return False
            kept = url_groups.remove(codec.decode_endpoints(raw), endpoints)
            if kept:
                doc = codec.encode_endpoints(kept)
                await conn.execute(Q["set_url_group"], account_id, group, doc, now_ms)
            else:
                await conn.execute(Q["delete_url_group"], account_id, group)
            return True

        found: bool = await self._db.run(run)
        return found

    async def get_url_group(self, account_id: str, name: str) -> UrlGroup | None:
        row = await self._db.fetchrow(Q["url_groups"], account_id, name)
        return None if row is None else _group(row)

    async def list_url_groups(self, account_id: str) -> list[UrlGroup]:
        return [_group(r) for r in await self._db.fetch(Q["url_groups"], account_id, None)]

    async def delete_url_group(self, account_id: str, name: str) -> None:
        await self._db.execute(Q["delete_url_group"], account_id, name)
