"""claim_due, next_due_ms, leases (renew, expiry, release), fencing, record_outcomes."""

from __future__ import annotations

from homing.models import FlowControl, LogState, MessageFilter, MessageState, OutcomeKind
from homing.storage.base import Storage
from tests.contract.conftest import (
    ACCOUNT,
    T0,
    claim,
    delivered,
    failed,
    gather,
    ids_of,
    insert,
    log_states,
    new_message,
    retry,
)

# -- claiming ------------------------------------------------------------------------------


async def test_claim_takes_due_messages_oldest_due_first(storage: Storage) -> None:
    # Given messages due at different times, inserted out of order
    late = new_message(delay_ms=3000)
    early = new_message(delay_ms=1000)
    middle = new_message(delay_ms=2000)
    await insert(storage, late, early, middle)

    # When two are claimed once all are due
    claims = await claim(storage, now=T0 + 5000, limit=2)

    # Then the two that were due first are claimed, ACTIVE, with one lease token
    assert ids_of(claims) == sorted([early.id, middle.id])
    assert {c.message.state for c in claims} == {MessageState.ACTIVE}
    assert len({c.lease_token for c in claims}) == 1
    assert ids_of(await claim(storage, now=T0 + 5000)) == [late.id]


async def test_a_message_that_is_not_due_yet_is_not_claimed(storage: Storage) -> None:
    m = new_message(delay_ms=10_000)
    await insert(storage, m)

    assert await claim(storage, now=T0 + 9_999) == []
    assert ids_of(await claim(storage, now=T0 + 10_000)) == [m.id]


async def test_claim_logs_active(storage: Storage) -> None:
    [mid] = await insert(storage, new_message())
    await claim(storage, now=T0 + 5)

    page = await storage.list_logs(
        ACCOUNT, filter=MessageFilter(message_ids=(mid,)), before_id=None, count=10
    )
    assert [(e.state, e.time_ms) for e in page.items] == [
        (LogState.ACTIVE, T0 + 5),
        (LogState.CREATED, T0),
    ]


async def test_each_due_message_goes_to_exactly_one_of_two_concurrent_claimers(
    storage: Storage,
) -> None:
    # Given 60 due messages
    ids = await insert(storage, *[new_message() for _ in range(60)])

    # When two claimers ask for 40 each at the same moment
    a, b = await gather(
        claim(storage, limit=40, node="node_a"), claim(storage, limit=40, node="node_b")
    )

    # Then every message is claimed exactly once
    assert set(ids_of(a)).isdisjoint(ids_of(b))
    assert sorted(ids_of(a) + ids_of(b)) == sorted(ids)
    assert await claim(storage) == []


async def test_each_claim_carries_a_new_lease_token(storage: Storage) -> None:
    await insert(storage, new_message(), new_message())
    [first] = await claim(storage, limit=1)
    [second] = await claim(storage, limit=1)
    assert first.lease_token != second.lease_token


async def test_next_due_is_the_earliest_ready_message(storage: Storage) -> None:
    assert await storage.next_due_ms() is None
    await insert(storage, new_message(delay_ms=5000), new_message(delay_ms=2000))
    assert await storage.next_due_ms() == T0 + 2000
    await claim(storage, now=T0 + 2000)
    assert await storage.next_due_ms() == T0 + 5000


async def test_inserting_due_work_wakes_the_listeners(storage: Storage) -> None:
    woken: list[int] = []
    storage.add_wake_listener(woken.append)

    await insert(storage, new_message(delay_ms=7000))

    assert T0 + 7000 in woken


# -- leases --------------------------------------------------------------------------------


async def test_an_expired_lease_is_released_and_the_message_claimed_again(
    storage: Storage,
) -> None:
    # Given a claim whose lease ends at T0 + 1000
    [mid] = await insert(storage, new_message())
    [first] = await claim(storage, lease_ms=1000)

    # When the reaper runs before, then after, the lease ends
    before = await storage.release_expired_leases(now_ms=T0 + 999)
    after = await storage.release_expired_leases(now_ms=T0 + 1001)

    # Then only the second releases it: READY, due now, with the interruption logged
    assert (before, after) == (0, 1)
    stored = await storage.get_message(ACCOUNT, mid)
    assert stored is not None
    assert (stored.state, stored.due_ms) == (MessageState.READY, T0 + 1001)
    assert await log_states(storage, mid) == ["CREATED", "ACTIVE", "ERROR"]
    [second] = await claim(storage, now=T0 + 1001, node="node_b")
    assert second.lease_token != first.lease_token


async def test_renewing_keeps_a_lease_from_expiring(storage: Storage) -> None:
    await insert(storage, new_message(), new_message())
    await claim(storage, lease_ms=1000, node="node_a", limit=1)
    await claim(storage, lease_ms=1000, node="node_b", limit=1)

    renewed = await storage.renew_leases("node_a", until_ms=T0 + 60_000)

    assert renewed == 1
    assert await storage.release_expired_leases(now_ms=T0 + 30_000) == 1  # node_b's only


async def test_release_leases_of_one_node_or_of_all(storage: Storage) -> None:
    await insert(storage, *[new_message() for _ in range(3)])
    await claim(storage, node="node_a", limit=2)
    await claim(storage, node="node_b", limit=1)

    assert await storage.release_leases(node_id="node_a", now_ms=T0 + 10) == 2
    assert await storage.release_leases(node_id="node_a", now_ms=T0 + 10) == 0
    assert await storage.release_leases(node_id=None, now_ms=T0 + 10) == 1
    assert len(await claim(storage, now=T0 + 10)) == 3


# -- outcomes and fencing ------------------------------------------------------------------


async def test_an_outcome_with_a_stale_lease_token_is_ignored(storage: Storage) -> None:
    # Given a node whose lease expired and another node that took the message over
    [mid] = await insert(storage, new_message())
    [stale] = await claim(storage, lease_ms=1000, node="node_a")
    await storage.release_expired_leases(now_ms=T0 + 2000)
    [current] = await claim(storage, now=T0 + 2000, node="node_b")

    # When the first node reports a failure late, and the second a success
    late = await storage.record_outcomes([failed(stale, at=T0 + 2500)])
    ok = await storage.record_outcomes([delivered(current, at=T0 + 2600)])

    # Then only the current lease holder's outcome counts
    assert (late, ok) == ([False], [True])
    stored = await storage.get_message(ACCOUNT, mid)
    assert stored is not None
    assert (stored.state, stored.dlq_id, stored.final_ms) == (
        MessageState.DELIVERED,
        None,
        T0 + 2600,
    )
    # And an outcome for a message that is no longer active is ignored too
    assert await storage.record_outcomes([delivered(current, at=T0 + 2700)]) == [False]


async def test_delivered_is_final_and_logged(storage: Storage) -> None:
    [mid] = await insert(storage, new_message())
    [c] = await claim(storage)

    assert await storage.record_outcomes([delivered(c, at=T0 + 50, status=201)]) == [True]

    stored = await storage.get_message(ACCOUNT, mid)
    assert stored is not None
    assert (stored.state, stored.attempts, stored.final_ms, stored.due_ms) == (
        MessageState.DELIVERED,
        1,
        T0 + 50,
        None,
    )
    assert stored.last_response is not None
    assert (stored.last_response.status, stored.last_response.body) == (201, b"ok")
    page = await storage.list_logs(
        ACCOUNT, filter=MessageFilter(message_ids=(mid,)), before_id=None, count=1
    )
    assert (page.items[0].state, page.items[0].info) == (
        LogState.DELIVERED,
        {"responseStatus": 201},
    )


async def test_a_retry_makes_the_message_ready_again_at_its_retry_time(storage: Storage) -> None:
    [mid] = await insert(storage, new_message())
    [c] = await claim(storage)
    woken: list[int] = []
    storage.add_wake_listener(woken.append)

    assert await storage.record_outcomes([retry(c, retry_at=T0 + 9000)]) == [True]

    stored = await storage.get_message(ACCOUNT, mid)
    assert stored is not None
    assert (stored.state, stored.due_ms, stored.attempts, stored.final_ms) == (
        MessageState.READY,
        T0 + 9000,
        1,
        None,
    )
    assert T0 + 9000 in woken
    assert await storage.next_due_ms() == T0 + 9000
    assert await claim(storage, now=T0 + 8999) == []
    [again] = await claim(storage, now=T0 + 9000)
    assert again.message.attempts == 1
    page = await storage.list_logs(
        ACCOUNT, filter=MessageFilter(message_ids=(mid,)), before_id=None, count=10
    )
    assert [e.state.value for e in page.items] == ["ACTIVE", "RETRY", "ERROR", "ACTIVE", "CREATED"]
    assert page.items[1].info == {"nextDeliveryTime": T0 + 9000}
    assert page.items[2].info["responseStatus"] == 500


async def test_a_failure_puts_the_message_in_the_dlq(storage: Storage) -> None:
    [mid] = await insert(storage, new_message())
    [c] = await claim(storage)

    assert await storage.record_outcomes([failed(c, at=T0 + 70, dlq_id="dlq-1")]) == [True]

    stored = await storage.get_message(ACCOUNT, mid)
    assert stored is not None
    assert (stored.state, stored.dlq_id, stored.dlq_ms, stored.final_ms) == (
        MessageState.FAILED,
        "dlq-1",
        T0 + 70,
        T0 + 70,
    )
    assert await log_states(storage, mid) == ["CREATED", "ACTIVE", "ERROR", "FAILED"]
    assert (await storage.get_dlq(ACCOUNT, "dlq-1")) is not None


async def test_a_requested_cancel_turns_a_failure_into_canceled_without_new_messages(
    storage: Storage,
) -> None:
    # Given an active message whose cancel was requested during its attempt
    [mid] = await insert(storage, new_message())
    [c] = await claim(storage)
    await storage.cancel_messages(ACCOUNT, message_ids=[mid], filter=None, limit=None, now_ms=T0)

    # When the attempt fails, with a failure callback to create
    callback = new_message(url="https://example.com/failure-callback", at=T0 + 100)
    assert await storage.record_outcomes([failed(c, new=(callback,))]) == [True]

    # Then it is CANCELED, not in the DLQ, and the callback was not created
    stored = await storage.get_message(ACCOUNT, mid)
    assert stored is not None
    assert (stored.state, stored.dlq_id) == (MessageState.CANCELED, None)
    assert await storage.get_message(ACCOUNT, callback.id) is None
    assert (await log_states(storage, mid))[-2:] == ["ERROR", "CANCELED"]


async def test_a_requested_cancel_does_not_undo_a_delivery(storage: Storage) -> None:
    [mid] = await insert(storage, new_message())
    [c] = await claim(storage)
    await storage.cancel_messages(ACCOUNT, message_ids=[mid], filter=None, limit=None, now_ms=T0)

    assert await storage.record_outcomes([delivered(c)]) == [True]

    stored = await storage.get_message(ACCOUNT, mid)
    assert stored is not None and stored.state is MessageState.DELIVERED


async def test_an_outcome_inserts_its_callbacks_atomically(storage: Storage) -> None:
    [mid] = await insert(storage, new_message(callback="https://example.com/cb"))
    [c] = await claim(storage)
    cb = new_message(url="https://example.com/cb", at=T0 + 100)
    woken: list[int] = []
    storage.add_wake_listener(woken.append)

    assert await storage.record_outcomes([delivered(c, new=(cb,))]) == [True]

    stored = await storage.get_message(ACCOUNT, cb.id)
    assert stored is not None and stored.state is MessageState.READY
    assert T0 + 100 in woken
    assert ids_of(await claim(storage, now=T0 + 100)) == [cb.id]
    assert await log_states(storage, cb.id) == ["CREATED", "ACTIVE"]
    assert mid != cb.id


async def test_a_batch_of_outcomes_is_recorded_each_on_its_own(storage: Storage) -> None:
    ids = await insert(storage, *[new_message() for _ in range(4)])
    claims = {c.message.id: c for c in await claim(storage)}
    [a, b, c, d] = [claims[i] for i in ids]
    stale = type(d)(d.message, d.lease_token + 1)

    results = await storage.record_outcomes(
        [delivered(a), retry(b), failed(c, dlq_id="dlq-x"), delivered(stale)]
    )

    assert results == [True, True, True, False]
    states = [(await storage.get_message(ACCOUNT, i)).state for i in ids]  # type: ignore[union-attr]
    assert states == [
        MessageState.DELIVERED,
        MessageState.READY,
        MessageState.FAILED,
        MessageState.ACTIVE,
    ]
    assert OutcomeKind.DELIVERED.value == "delivered"


# -- claiming ahead ------------------------------------------------------------------------


async def test_messages_due_soon_are_claimed_ahead_but_flow_controlled_ones_only_once_due(
    storage: Storage,
) -> None:
    soon = new_message(delay_ms=15)
    later = new_message(delay_ms=500)
    limited = new_message(delay_ms=15, flow=FlowControl(key="k", parallelism=5))
    await insert(storage, soon, later, limited)

    ahead = await storage.claim_due(
        now_ms=T0, limit=10, node_id="node-a", lease_ms=30_000, due_by_ms=T0 + 20
    )

    assert ids_of(ahead) == [soon.id]
    assert ahead[0].message.due_ms == T0 + 15  # the claimer sends it then
    assert ids_of(await claim(storage, now=T0 + 15)) == [limited.id]


async def test_cancel_requested_tells_whether_a_claimed_message_was_canceled(
    storage: Storage,
) -> None:
    kept, canceled = new_message(), new_message()
    await insert(storage, kept, canceled)
    await claim(storage, now=T0)
    await storage.cancel_messages(
        ACCOUNT, message_ids=[canceled.id], filter=None, limit=None, now_ms=T0 + 1
    )

    assert await storage.cancel_requested(kept.id) is False
    assert await storage.cancel_requested(canceled.id) is True
    assert await storage.cancel_requested("msg_that_never_was") is True
