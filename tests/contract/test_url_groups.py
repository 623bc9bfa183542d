"""URL groups (topics): endpoints upserted by url or name, removed, listed, deleted."""

from __future__ import annotations

from homing.publish import Endpoint
from homing.storage.base import Storage
from tests.contract.conftest import ACCOUNT, OTHER, T0


async def endpoints(storage: Storage, name: str) -> list[tuple[str, str | None]]:
    group = await storage.get_url_group(ACCOUNT, name)
    assert group is not None
    return [(e.url, e.name) for e in group.endpoints]


async def test_upsert_creates_the_group_and_appends_in_order(storage: Storage) -> None:
    await storage.upsert_endpoints(
        ACCOUNT, "g", [Endpoint("https://a.example"), Endpoint("https://b.example", "b")],
        now_ms=T0,
    )  # fmt: skip
    await storage.upsert_endpoints(ACCOUNT, "g", [Endpoint("https://c.example")], now_ms=T0 + 1)

    assert await endpoints(storage, "g") == [
        ("https://a.example", None),
        ("https://b.example", "b"),
        ("https://c.example", None),
    ]
    group = await storage.get_url_group(ACCOUNT, "g")
    assert group is not None
    assert (group.name, group.created_ms, group.updated_ms) == ("g", T0, T0 + 1)
    assert await storage.get_url_group(OTHER, "g") is None


async def test_an_endpoint_with_the_same_url_or_name_is_replaced_in_place(
    storage: Storage,
) -> None:
    await storage.upsert_endpoints(
        ACCOUNT, "g",
        [Endpoint("https://a.example"), Endpoint("https://b.example", "b"),
         Endpoint("https://z.example")],
        now_ms=T0,
    )  # fmt: skip

    await storage.upsert_endpoints(
        ACCOUNT, "g",
        [Endpoint("https://a.example", "a"), Endpoint("https://b2.example", "b")],
        now_ms=T0 + 1,
    )  # fmt: skip

    assert await endpoints(storage, "g") == [
        ("https://a.example", "a"),
        ("https://b2.example", "b"),
        ("https://z.example", None),
    ]


async def test_remove_by_url_or_name_and_delete_the_emptied_group(storage: Storage) -> None:
    await storage.upsert_endpoints(
        ACCOUNT, "g", [Endpoint("https://a.example"), Endpoint("https://b.example", "b")],
        now_ms=T0,
    )  # fmt: skip

    assert await storage.remove_endpoints(
        ACCOUNT, "g", [Endpoint("https://a.example")], now_ms=T0 + 1
    )
    assert await endpoints(storage, "g") == [("https://b.example", "b")]

    assert await storage.remove_endpoints(ACCOUNT, "g", [Endpoint("", "b")], now_ms=T0 + 2)
    assert await storage.get_url_group(ACCOUNT, "g") is None
    assert not await storage.remove_endpoints(
        ACCOUNT, "g", [Endpoint("https://a.example")], now_ms=T0 + 3
    )


async def test_list_and_delete_groups(storage: Storage) -> None:
    for name in ("beta", "alpha"):
        await storage.upsert_endpoints(
            ACCOUNT, name, [Endpoint(f"https://{name}.example")], now_ms=T0
        )
    await storage.upsert_endpoints(OTHER, "gamma", [Endpoint("https://g.example")], now_ms=T0)

    assert [g.name for g in await storage.list_url_groups(ACCOUNT)] == ["alpha", "beta"]
    await storage.delete_url_group(ACCOUNT, "alpha")
    await storage.delete_url_group(ACCOUNT, "missing")
    assert [g.name for g in await storage.list_url_groups(ACCOUNT)] == ["beta"]
