"""What a publish creates (`publish.build_messages`), what a DLQ retry creates
(`dlq.retry_replacements`) and the CREATED log entry of each (`log_events.created`)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from homing import log_events
from homing.dlq import retry_replacements
from homing.headers import PublishOptions, parse_options
from homing.models import LogEvent, LogState, Message, MessageState, NewMessage
from homing.publish import Endpoint, build_messages

NOW = 1_700_000_000_000
GROUP = (Endpoint("https://a.example/hook", "a"), Endpoint("https://b.example/hook"))


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"msg_{next(counter)}"


def options(*headers: tuple[str, str]) -> PublishOptions:
    return parse_options(list(headers))


def build(opts: PublishOptions, targets: tuple[Endpoint, ...] = GROUP) -> list[NewMessage]:
    return build_messages(
        account_id="acct",
        targets=targets,
        options=opts,
        body=b"payload",
        now_ms=NOW,
        new_id=ids(),
        caller_ip="10.0.0.1",
        topic_name="fans",
    )


def test_one_message_per_target_in_endpoint_order() -> None:
    messages = build(options(("Upstash-Method", "PUT"), ("Upstash-Forward-X-A", "1")))
    assert [(m.id, m.url, m.endpoint_name) for m in messages] == [
        ("msg_1", "https://a.example/hook", "a"),
        ("msg_2", "https://b.example/hook", None),
    ]
    for m in messages:
        assert (m.account_id, m.body, m.topic_name, m.caller_ip) == (
            "acct",
            b"payload",
            "fans",
            "10.0.0.1",
        )
        assert (m.spec.method, m.spec.headers, m.spec.max_retries) == ("PUT", {"X-A": ["1"]}, 3)
        assert m.created_ms == m.not_before_ms == NOW
        assert m.dedup_key is None


def test_delay_and_not_before_set_the_first_attempt() -> None:
    assert build(options(("Upstash-Delay", "10s")))[0].not_before_ms == NOW + 10_000
    later = options(("Upstash-Delay", "10s"), ("Upstash-Not-Before", str(NOW // 1000 + 60)))
    assert build(later)[0].not_before_ms == NOW + 60_000  # not-before wins over delay


def test_each_endpoint_is_deduplicated_on_its_own() -> None:
    first, second = build(options(("Upstash-Deduplication-Id", "order-1")))
    assert first.dedup_key and second.dedup_key and first.dedup_key != second.dedup_key
    again = build(options(("Upstash-Deduplication-Id", "order-1")))
    assert [m.dedup_key for m in again] == [first.dedup_key, second.dedup_key]


def test_content_deduplication_depends_on_the_body() -> None:
    content = options(("Upstash-Content-Based-Deduplication", "true"))
    (m,) = build(content, GROUP[:1])
    (other,) = build_messages(
        account_id="acct",
        targets=GROUP[:1],
        options=content,
        body=b"other",
        now_ms=NOW,
        new_id=ids(),
    )
    assert m.dedup_key is not None and m.dedup_key != other.dedup_key


def test_created_names_the_first_attempt_only_when_it_is_later() -> None:
    now, later = build(options())[0], build(options(("Upstash-Delay", "5s")))[0]
    assert log_events.created(now, NOW) == LogEvent(LogState.CREATED)
    assert log_events.created(later, NOW) == LogEvent(
        LogState.CREATED, {"nextDeliveryTime": NOW + 5000}
    )


# -- DLQ retry ---------------------------------------------------------------------------------


def dead(message: NewMessage, dlq_id: str | None) -> Message:
    return Message(
        id=message.id,
        account_id=message.account_id,
        url=message.url,
        body=message.body,
        spec=message.spec,
        state=MessageState.FAILED,
        created_ms=message.created_ms,
        not_before_ms=message.not_before_ms,
        due_ms=None,
        attempts=4,
        caller_ip=message.caller_ip,
        queue_name="orders",
        topic_name=message.topic_name,
        endpoint_name=message.endpoint_name,
        labels=message.labels,
        dlq_id=dlq_id,
    )


ORIGINAL = options(
    ("Upstash-Method", "PUT"),
    ("Upstash-Retries", "5"),
    ("Upstash-Forward-X-A", "1"),
    ("Upstash-Label", "blue"),
    ("Upstash-Deduplication-Id", "order-1"),
)


def test_a_retry_repeats_the_original_request_as_a_new_message_due_now() -> None:
    entry = dead(build(ORIGINAL)[0], "dlq_1")
    pairs = retry_replacements([entry], options(), now_ms=NOW + 1000, new_id=lambda: "msg_new")
    ((dlq_id, m),) = pairs
    assert (dlq_id, m.id) == ("dlq_1", "msg_new")
    assert (m.url, m.body, m.endpoint_name, m.queue_name) == (
        entry.url,
        b"payload",
        "a",
        "orders",
    )
    assert m.spec == entry.spec
    assert m.labels == ("blue",)
    assert m.created_ms == m.not_before_ms == NOW + 1000
    assert m.dedup_key is None  # the original dedup id would swallow the retry


def test_a_retry_overrides_only_what_the_retry_request_gave() -> None:
    entry = dead(build(ORIGINAL)[0], "dlq_1")
    overrides = options(
        ("Upstash-Retries", "1"), ("Upstash-Delay", "30s"), ("Upstash-Forward-X-B", "2")
    )
    ((_, m),) = retry_replacements([entry], overrides, now_ms=NOW, new_id=ids())
    assert (m.spec.max_retries, m.spec.method) == (1, "PUT")
    assert m.spec.headers == {"X-A": ["1"], "X-B": ["2"]}
    assert m.not_before_ms == NOW + 30_000
    assert m.labels == ("blue",)


def test_entries_no_longer_in_the_dlq_are_left_out() -> None:
    first, second = build(ORIGINAL)
    pairs = retry_replacements(
        [dead(first, None), dead(second, "dlq_2")], options(), now_ms=NOW, new_id=ids()
    )
    assert [(dlq_id, m.url) for dlq_id, m in pairs] == [("dlq_2", second.url)]
