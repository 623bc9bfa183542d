"""Purge and statistics."""

from __future__ import annotations

import pytest

from homing.clock import ManualClock
from homing.delivery.engine import DeliveryEngine, EngineSettings
from homing.delivery.sender import Sender
from homing.storage.base import Storage
from tests.contract.conftest import (
    ACCOUNT,
    T0,
    claim,
    delivered,
    insert,
    new_message,
    to_dlq,
)

DAY = 86_400_000


async def test_purge_forgets_old_final_messages_logs_dlq_entries_and_dedup_keys(
    storage: Storage,
) -> None:
    # Given a delivered message, a DLQ entry, a pending message and a dedup key, all at T0
    [done] = await insert(storage, new_message(dedup="once"), window_ms=DAY)
    [c] = await claim(storage)
    await storage.record_outcomes([delivered(c, at=T0 + 1)])
    [dlq_id] = await to_dlq(storage, new_message())
    [pending] = await insert(storage, new_message(delay_ms=30 * DAY))

    # When purged two days later, keeping messages 1 day and the DLQ 3 days
    removed = await storage.purge(now_ms=T0 + 2 * DAY, retention_ms=DAY, dlq_retention_ms=3 * DAY)

    # Then the delivered message and the logs went, the DLQ entry and the pending message stay
    assert removed > 0
    assert await storage.get_message(ACCOUNT, done) is None
    assert await storage.get_dlq(ACCOUNT, dlq_id) is not None
    assert await storage.get_message(ACCOUNT, pending) is not None
    results = await storage.insert_messages(
        [new_message(dedup="once")], now_ms=T0 + 2 * DAY, dedup_window_ms=DAY
    )
    assert not results[0].deduplicated

    # And once the DLQ retention has passed too, the entry goes
    await storage.purge(now_ms=T0 + 4 * DAY, retention_ms=DAY, dlq_retention_ms=3 * DAY)
    assert await storage.get_dlq(ACCOUNT, dlq_id) is None


async def test_state_counts(storage: Storage) -> None:
    await insert(storage, new_message(), new_message(delay_ms=DAY), new_message(queue="q"))
    await to_dlq(storage, new_message())
    await claim(storage, limit=1)

    counts = await storage.state_counts(ACCOUNT)

    assert counts["ready"] + counts["active"] + counts["queued"] == 3
    assert (counts["failed"], counts["dlq"], counts["delivered"]) == (1, 1, 0)
    assert counts["waiting"] == 0
    assert (await storage.state_counts(None))["failed"] == 1


async def test_delivery_latencies_and_event_counts(storage: Storage) -> None:
    now = T0 + 10 * DAY
    await insert(storage, new_message(at=now), new_message(at=now), now=now)
    claims = await claim(storage, now=now + 10)
    await storage.record_outcomes(
        [delivered(c, at=now + 30 + 10 * i) for i, c in enumerate(claims)]
    )

    latencies = await storage.delivery_latencies(ACCOUNT, since_ms=now, limit=10)
    counts = await storage.event_counts(ACCOUNT, since_ms=now, bucket_ms=60_000)

    assert sorted(latencies) == [30, 40]
    bucket = (now // 60_000) * 60_000
    assert sorted(counts) == [
        (bucket, "ACTIVE", 2),
        (bucket, "CREATED", 2),
        (bucket, "DELIVERED", 2),
    ]


async def test_statistics_cover_only_entries_since_the_given_time(storage: Storage) -> None:
    late, early = T0 + 10 * DAY, T0
    # Given a delivery at a late time, then one recorded at an earlier time (a clock step back)
    await insert(storage, new_message(at=late), now=late)
    [c] = await claim(storage, now=late + 5)
    await storage.record_outcomes([delivered(c, at=late + 20)])
    await insert(storage, new_message(at=early), now=early)
    [c] = await claim(storage, now=early + 5)
    await storage.record_outcomes([delivered(c, at=early + 70)])

    # When statistics since a day before the late one are read
    since = late - DAY
    counts = await storage.event_counts(ACCOUNT, since_ms=since, bucket_ms=60_000)
    latencies = await storage.delivery_latencies(ACCOUNT, since_ms=since, limit=10)

    # Then only the late entries count
    bucket = (late // 60_000) * 60_000
    assert sorted(counts) == [
        (bucket, "ACTIVE", 1),
        (bucket, "CREATED", 1),
        (bucket, "DELIVERED", 1),
    ]
    assert latencies == [20]


async def test_the_durability_check_names_what_is_unsafe(storage: Storage) -> None:
    check = getattr(storage, "check_durability", None)
    if check is None:
        pytest.skip("SQLite: durability is the backend's own setting (synchronous=FULL)")
    warning = await check()
    # None on a server that flushes its commits; a warning that names fsync otherwise.
    assert warning is None or "fsync" in warning


async def test_a_purge_round_of_the_engine_keeps_up_with_any_backlog(storage: Storage) -> None:
    # Given more log entries past retention (three for each delivered message) than one purge
    # call removes: the store deletes in bounded batches to keep its write transactions short
    for _ in range(2):
        await insert(storage, *[new_message() for _ in range(1_000)])
        claims = await claim(storage, limit=1_000)
        assert len(claims) == 1_000
        await storage.record_outcomes([delivered(c) for c in claims])
    [pending] = await insert(storage, new_message(delay_ms=30 * DAY))
    engine = DeliveryEngine(
        storage,
        Sender(allow_private=True),  # never started: a purge round sends nothing
        ManualClock(T0 + 2 * DAY),
        settings=EngineSettings(retention_ms=DAY, dlq_retention_ms=DAY),
    )

    # When the engine runs one purge round
    await engine._purge()

    # Then nothing past retention is left, and the pending message stays
    assert await storage.purge(now_ms=T0 + 2 * DAY, retention_ms=DAY, dlq_retention_ms=DAY) == 0
    assert await storage.get_message(ACCOUNT, pending) is not None
