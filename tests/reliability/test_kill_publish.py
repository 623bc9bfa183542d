"""Crash safety of publishing: `homing dev` is killed with SIGKILL while clients publish.

Eight client threads publish 2,000 single messages with `POST /v2/publish/...`, each with an
`Upstash-Deduplication-Id`. The server is killed three times at random moments and restarted on
the same data directory. A client whose publish got no answer (connection refused or cut) sends
the very same request again until it is answered, as a careful client does.

What a user would notice, and what this asserts:

* every publish that was answered (201 or 202) is delivered;
* a publish that was retried after a lost answer yields exactly ONE message: the receiver sees
  each body under one message id only, and that id is the one the client was finally given.
  When the first try had been committed before the crash, the retry answers
  `"deduplicated": true` with the original id; the test counts how often that happened;
* `PRAGMA integrity_check` answers `ok` after every kill.

tests/acceptance/test_kill.py does the same with batches; this one uses single publishes and
checks the one-message-per-deduplication-id promise body by body.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from tests.reliability.support import HomingProcess, SinkProcess, integrity, state_counts
from tests.support.http import AUTH
from tests.support.waiting import wait_until

MESSAGES = 2000
CLIENTS = 8
KILLS = 3


class Publisher:
    def __init__(self, base_url: str, destination: str) -> None:
        self.base_url = base_url
        self.destination = destination
        self.answered: dict[int, str] = {}
        self.retried_after_lost_answer = 0
        self.deduplicated_on_retry = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._next = 0

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= MESSAGES:
                return None
            self._next += 1
            return self._next - 1

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, headers=AUTH, timeout=10) as client:
            while (n := self._take()) is not None:
                headers = {
                    "Upstash-Deduplication-Id": f"publish-kill-{n}",
                    "Upstash-Retries": "10",
                    "Upstash-Retry-Delay": "200",
                    "Content-Type": "text/plain",
                }
                tries = 0
                while True:
                    tries += 1
                    try:
                        answer = client.post(
                            f"/v2/publish/{self.destination}", content=str(n), headers=headers
                        )
                    except httpx.TransportError:
                        time.sleep(0.05)  # no answer: the server is down; send it again later
                        continue
                    if answer.status_code >= 500:
                        time.sleep(0.05)
                        continue
                    break
                if answer.status_code not in (201, 202):
                    self.errors.append(f"{answer.status_code} {answer.text}")
                    return
                doc = answer.json()
                with self._lock:
                    self.answered[n] = doc["messageId"]
                    if tries > 1:
                        self.retried_after_lost_answer += 1
                        self.deduplicated_on_retry += bool(doc.get("deduplicated"))


@pytest.mark.timeout(300)
def test_sigkill_during_publishing_keeps_every_answered_publish_and_one_message_per_dedup_id(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    rng = random.Random()
    sink = SinkProcess()
    homing = HomingProcess(
        tmp_path / "data", tmp_path / "homing.log", extra=["--log-level", "warning"]
    )
    checks: list[str] = []
    kill_after: list[int] = []
    try:
        homing.start()
        publisher = Publisher(homing.base_url, sink.url("/ok/p"))
        threads = [threading.Thread(target=publisher.run) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        for threshold in sorted(rng.sample(range(100, MESSAGES - 200), KILLS)):
            wait_until(lambda t=threshold: len(publisher.answered) >= t, timeout=60, interval=0.002)  # type: ignore[misc]
            time.sleep(rng.uniform(0, 0.03))
            homing.kill()
            kill_after.append(len(publisher.answered))
            checks.append(integrity(homing.db))
            homing.start()
        for t in threads:
            t.join(120)
        assert publisher.errors == []
        assert len(publisher.answered) == MESSAGES
        answered_ids = set(publisher.answered.values())
        assert wait_until(lambda: set(sink.ids()) >= answered_ids, timeout=60, interval=0.1)
        time.sleep(0.5)  # a second message for a body, if one existed, would arrive by now
        homing.stop()
        final_states = state_counts(homing.db)
    finally:
        homing.stop()
        deliveries = sink.deliveries()
        sink.close()

    ids_per_body: dict[int, set[str]] = defaultdict(set)
    for delivery in deliveries:
        ids_per_body[int(delivery[3])].add(delivery[0])
    delivered_ids = {d[0] for d in deliveries}
    lost = answered_ids - delivered_ids
    unknown = delivered_ids - answered_ids
    two_messages = {n: ids for n, ids in ids_per_body.items() if len(ids) > 1}
    wrong_id = [n for n, ids in ids_per_body.items() if ids != {publisher.answered[n]}]
    print(
        f"\nkill during publish: publishes={MESSAGES} clients={CLIENTS} kills={KILLS} "
        f"kill_after_answered={kill_after} retried_after_lost_answer="
        f"{publisher.retried_after_lost_answer} of_which_deduplicated="
        f"{publisher.deduplicated_on_retry} deliveries={len(deliveries)} "
        f"messages_delivered={len(delivered_ids)} lost={len(lost)} unknown={len(unknown)} "
        f"bodies_with_two_messages={len(two_messages)} integrity={checks} "
        f"final_states={final_states} seconds={time.monotonic() - started:.1f}"
    )
    assert checks == ["ok"] * KILLS
    assert lost == set(), f"{len(lost)} answered publishes were never delivered"
    assert unknown == set(), f"{len(unknown)} deliveries carried ids no client was given"
    assert two_messages == {}, f"{len(two_messages)} dedup ids produced two messages"
    assert wrong_id == []
    assert final_states == {"delivered": MESSAGES}
