"""Model-based test: Hypothesis drives a real Homing (in-process, on a ManualClock) with random
sequences of publish, enqueue (FIFO queue, parallelism 1), cancel, DLQ retry, key rotation,
clock advance and restart, and compares it after every step with a small model of QStash.

Destinations are paths of one real receiver: `/ok` answers 200, `/fail` 500, and `/nr` 489
with `Upstash-NonRetryable-Error: true`. Every message has `Upstash-Retry-Delay: 1000`, so the
model knows exactly when each retry is due. After each step the test waits until the server is
idle (nothing claimed, nothing due) and then checks:

* each message is in exactly one state, the one the model predicts (and its log shows at most
  one final entry);
* a delivered message never reverts;
* the receiver saw exactly the attempts the model predicts, never more than 1 + retries, with
  `Upstash-Retried` counting 0, 1, 2, ...;
* the DLQ holds a message iff it failed for good (retries exhausted, or non-retryable), and a
  DLQ retry removes the entry and creates a new message;
* the queue delivers in enqueue order, one message at a time: a message's attempts form one
  block that starts only after the previous message became final;
* every delivery is signed with the key that is current at that moment (checked with PyJWT
  against that key alone, and with the SDK's Receiver), across rotations and restarts.

15 examples of up to 20 steps run in the fast tier; the soak tier (HOMING_SOAK=1) runs 300 of
up to 50 steps.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from qstash import QStash
from qstash import Receiver as SignatureReceiver

from homing.clock import ManualClock
from homing.config import dev_accounts
from homing.models import MessageState
from tests.conftest import dev_settings
from tests.reliability.support import SOAK, SOAK_REASON
from tests.support.receiver import Receiver, Reply
from tests.support.server import DEV_CURRENT_KEY, DEV_NEXT_KEY, DEV_TOKEN, RunningServer, free_port

RETRY_DELAY_MS = 1000
QUEUE = "fifo"
MAX_RESTARTS = 2  # a restart costs ~0.3 s; two per example exercise recovery enough
FINAL = {"delivered", "failed", "canceled"}


@dataclass
class Msg:
    id: str
    path: str
    retries: int
    queue: bool
    attempts: int = 0
    state: str = "ready"  # ready (first attempt or retry due at `due`), queued, or a final state
    due: int = 0
    dlq_id: str | None = None


@dataclass
class Figures:
    examples: int = 0
    steps: int = 0
    messages: int = 0
    attempts: int = 0
    restarts: int = 0
    rotations: int = 0
    dlq_retries: int = 0
    cancels: int = 0
    final_states: dict[str, int] = field(default_factory=dict)


FIGURES = Figures()
RECEIVER: Receiver | None = None


class HomingModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        assert RECEIVER is not None
        self.receiver = RECEIVER
        self.dir = Path(tempfile.mkdtemp(prefix="homing-model-"))
        self.clock = ManualClock(start_ms=1_800_000_000_000)
        self.server = self._start()
        self.messages: dict[str, Msg] = {}
        self.queue: list[str] = []  # ids of the queue not yet final, in enqueue order
        self.queue_started: list[str] = []  # the order in which queue messages became head
        self.keys = (DEV_CURRENT_KEY, DEV_NEXT_KEY)
        self.ever_delivered: set[str] = set()
        self.checked_requests = len(self.receiver.requests)
        self.counter = 0
        self.restarts = 0
        FIGURES.examples += 1

    # -- the real server ----------------------------------------------------------------

    def _start(self) -> RunningServer:
        data = self.dir / "data"
        # The public dev users get their keys reset at every start (so the TypeScript SDK's dev
        # mode recognises the server); keys of any other account survive a restart, which is
        # what this model checks.
        accounts = tuple(replace(a, reset_keys=False) for a in dev_accounts())
        settings = dev_settings(self.dir, port=free_port(), data_dir=str(data), accounts=accounts)
        server = RunningServer(settings, clock=self.clock).start()
        self.client = QStash(DEV_TOKEN, base_url=server.base_url)
        self.http = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {DEV_TOKEN}"}
        )
        return server

    def _busy(self) -> bool:
        storage = self.server.services.storage
        counts = self.server.run(lambda: storage.state_counts(None))
        due = self.server.run(storage.next_due_ms)
        return bool(counts["active"]) or (due is not None and due <= self.clock.now_ms())

    def settle(self) -> None:
        """Wait until nothing is claimed or due (twice in a row, 20 ms apart)."""
        deadline = time.monotonic() + 10
        quiet = 0
        while quiet < 2:
            assert time.monotonic() < deadline, "Homing did not become idle within 10 s"
            quiet = 0 if self._busy() else quiet + 1
            time.sleep(0.02 if quiet else 0.005)

    # -- the model ----------------------------------------------------------------------

    def _attempt(self, m: Msg, now: int) -> None:
        m.attempts += 1
        FIGURES.attempts += 1
        if m.path == "/ok":
            m.state = "delivered"
        elif m.path == "/nr" or m.attempts > m.retries:
            m.state = "failed"
        else:
            m.due = now + RETRY_DELAY_MS

    def _run_model(self) -> None:
        """Make every attempt that is due now, as the engine does, until nothing is due."""
        now = self.clock.now_ms()
        progressed = True
        while progressed:
            progressed = False
            if self.queue and self.messages[self.queue[0]].state == "queued":
                head = self.messages[self.queue[0]]
                head.state, head.due = "ready", now
                self.queue_started.append(head.id)
            for m in list(self.messages.values()):
                if m.state == "ready" and m.due <= now:
                    self._attempt(m, now)
                    progressed = True
            self.queue = [i for i in self.queue if self.messages[i].state not in FINAL]

    def _new(self, message_id: str, path: str, retries: int, queue: bool) -> None:
        state = "queued" if queue else "ready"
        self.messages[message_id] = Msg(
            message_id, path, retries, queue, state=state, due=self.clock.now_ms()
        )
        if queue:
            self.queue.append(message_id)
        FIGURES.messages += 1

    def _step(self) -> None:
        FIGURES.steps += 1
        self._run_model()
        self.settle()

    # -- rules ----------------------------------------------------------------------------

    @initialize()
    def make_queue(self) -> None:
        self.client.queue.upsert(QUEUE, parallelism=1)

    @rule(path=st.sampled_from(["/ok", "/fail", "/nr"]), retries=st.integers(0, 2))
    def publish(self, path: str, retries: int) -> None:
        self.counter += 1
        result = self.client.message.publish(
            url=self.receiver.url(path),
            body=f"p{self.counter}",
            retries=retries,
            retry_delay=str(RETRY_DELAY_MS),
        )
        self._new(result.message_id, path, retries, queue=False)
        self._step()

    @rule(path=st.sampled_from(["/ok", "/fail", "/nr"]), retries=st.integers(0, 2))
    def enqueue(self, path: str, retries: int) -> None:
        self.counter += 1
        result = self.client.message.enqueue(
            queue=QUEUE,
            url=self.receiver.url(path),
            body=f"q{self.counter}",
            retries=retries,
            retry_delay=str(RETRY_DELAY_MS),
        )
        self._new(result.message_id, path, retries, queue=True)
        self._step()

    # Candidates in creation order, never sorted by id: ids are random, and Hypothesis must
    # pick the same message when it replays a choice sequence.
    def _pending(self) -> list[str]:
        return [i for i, m in self.messages.items() if m.state not in FINAL]

    @precondition(lambda self: bool(self._pending()))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        message_id = data.draw(st.sampled_from(self._pending()))
        self.client.message.cancel(message_id)
        self.messages[message_id].state = "canceled"
        self.queue = [i for i in self.queue if i != message_id]
        FIGURES.cancels += 1
        self._step()

    def _dlq(self) -> list[str]:
        return [i for i, m in self.messages.items() if m.dlq_id is not None]

    @precondition(lambda self: bool(self._dlq()))
    @rule(data=st.data())
    def retry_from_dlq(self, data: st.DataObject) -> None:
        old = self.messages[data.draw(st.sampled_from(self._dlq()))]
        answer = self.http.post(f"/v2/dlq/retry/{old.dlq_id}")
        assert answer.status_code == 201, answer.text
        old.dlq_id = None
        self._new(answer.json()["messageId"], old.path, old.retries, queue=old.queue)
        FIGURES.dlq_retries += 1
        self._step()

    @rule()
    def rotate_keys(self) -> None:
        keys = self.client.signing_key.rotate()
        assert keys.current == self.keys[1], "the new current key must be the old next key"
        self.keys = (keys.current, keys.next)
        FIGURES.rotations += 1
        self._step()

    @rule(ms=st.sampled_from([400, 1000, 2500]))
    def advance_clock(self, ms: int) -> None:
        self.server.advance(ms)
        self._step()

    @precondition(lambda self: bool(self.messages) and self.restarts < MAX_RESTARTS)
    @rule()
    def restart(self) -> None:
        self.http.close()
        self.server.stop()
        self.clock = ManualClock(start_ms=self.clock.now_ms())
        self.server = self._start()
        self.restarts += 1
        FIGURES.restarts += 1
        self._step()

    # -- invariants -------------------------------------------------------------------------

    def _record_dlq_ids(self) -> None:
        listed = self.client.dlq.list(count=100).messages
        for entry in listed:
            m = self.messages[entry.message_id]
            if m.dlq_id is None and m.state == "failed" and m.attempts > 0:
                m.dlq_id = entry.dlq_id
        in_dlq = {e.message_id for e in listed}
        expected = {i for i, m in self.messages.items() if m.dlq_id is not None}
        assert in_dlq == expected, f"DLQ {sorted(in_dlq)} but the model says {sorted(expected)}"
        for m in self.messages.values():
            if m.dlq_id is not None:
                assert m.state == "failed"
                assert m.path == "/nr" or m.attempts == 1 + m.retries

    @invariant()
    def server_matches_model(self) -> None:
        storage = self.server.services.storage
        stored = {
            i: self.server.run(lambda i=i: storage.get_message("defaultUser", i))  # type: ignore[misc]
            for i in self.messages
        }
        expected_state = {"ready": MessageState.READY, "queued": MessageState.QUEUED}
        for i, m in self.messages.items():
            want = expected_state.get(m.state) or MessageState(m.state)
            assert stored[i] is not None and stored[i].state == want, (
                f"{i}: stored {stored[i] and stored[i].state}, model {m.state}"
            )
            assert stored[i].attempts == m.attempts
            if m.state == "delivered":
                self.ever_delivered.add(i)
        for i in self.ever_delivered:
            assert stored[i].state == MessageState.DELIVERED, f"{i} reverted from delivered"
        self._record_dlq_ids()

    @invariant()
    def receiver_saw_exactly_the_model_attempts(self) -> None:
        mine = [r for r in self.receiver.requests if r.message_id in self.messages]
        by_id: dict[str, list[int]] = {}
        for r in mine:
            by_id.setdefault(r.message_id, []).append(int(r.headers["Upstash-Retried"]))
        for i, m in self.messages.items():
            retried = by_id.get(i, [])
            assert len(retried) == m.attempts, f"{i}: {len(retried)} attempts, model {m.attempts}"
            assert len(retried) <= 1 + m.retries
            assert retried == list(range(len(retried)))
        # FIFO: queue messages' attempts come in blocks, in the order they became head.
        blocks: list[str] = []
        for r in mine:
            if self.messages[r.message_id].queue and (not blocks or blocks[-1] != r.message_id):
                blocks.append(r.message_id)
        assert blocks == [i for i in self.queue_started if self.messages[i].attempts > 0]

    @invariant()
    def every_new_delivery_is_signed_with_the_current_key(self) -> None:
        current, nxt = self.keys
        verifier = SignatureReceiver(current, nxt)
        for r in self.receiver.requests[self.checked_requests :]:
            if r.message_id not in self.messages:
                continue
            signature = r.headers["Upstash-Signature"]
            claims = jwt.decode(
                signature,
                current.encode(),
                algorithms=["HS256"],
                issuer="Upstash",
                options={"require": ["exp", "nbf", "iat", "sub"]},
            )
            assert claims["sub"] == self.receiver.url(r.path)
            verifier.verify(
                signature=signature, body=r.body.decode(), url=self.receiver.url(r.path)
            )
        self.checked_requests = len(self.receiver.requests)

    @invariant()
    def each_message_has_at_most_one_final_log_entry(self) -> None:
        if FIGURES.steps % 5:
            return  # the log check is the slowest; every fifth step is enough
        finals: dict[str, list[str]] = {}
        for e in self.http.get("/v2/logs", params={"count": 1000}).json()["logs"]:
            if e["state"] in ("DELIVERED", "FAILED", "CANCELED"):
                finals.setdefault(e["messageId"], []).append(e["state"])
        for i, states in finals.items():
            assert len(states) == 1, f"{i} has final log entries {states}"
            assert states[0].lower() == self.messages[i].state

    def teardown(self) -> None:
        for m in self.messages.values():
            FIGURES.final_states[m.state] = FIGURES.final_states.get(m.state, 0) + 1
        self.http.close()
        self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_homing_behaves_like_the_model() -> None:
    run_model(examples=15, steps=20)


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason=SOAK_REASON)
@pytest.mark.timeout(3600)
def test_soak_homing_behaves_like_the_model_over_many_long_runs() -> None:
    run_model(examples=300, steps=50)


def run_model(*, examples: int, steps: int) -> None:
    global RECEIVER, FIGURES
    FIGURES = Figures()
    started = time.monotonic()
    RECEIVER = Receiver()
    RECEIVER.on("/fail", lambda r: Reply(500, b"down"))
    RECEIVER.on("/nr", lambda r: Reply(489, b"no", {"Upstash-NonRetryable-Error": "true"}))
    try:
        run = HomingModel.TestCase()
        run.settings = settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            database=None,
        )
        run.runTest()
    finally:
        RECEIVER.close()
    print(f"\nmodel-based test: {FIGURES} seconds={time.monotonic() - started:.1f}")
    assert FIGURES.examples >= examples and FIGURES.attempts > 0
