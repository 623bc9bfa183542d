"""Upstash Workflow runs on PostgreSQL (mixed into PostgresStorage).

A run and its step list live in `workflow_runs` / `workflow_steps`; its messages are ordinary
messages (`messages.insert`) stored in the same transaction. Several nodes agree through the
database: the partial unique index on active run ids makes one init win, and every append and
every run end locks the run's row first, so step positions follow acceptance and a run ends
once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from homing.models import (
    InsertResult,
    NewMessage,
    NewRun,
    Page,
    Run,
    RunAppend,
    RunEnd,
    RunFilter,
    RunState,
    RunStep,
)
from homing.storage import codec
from homing.storage.postgres.filters import Params, compose, run_where
from homing.storage.postgres.listener import Announcer
from homing.storage.postgres.messages import Q, insert
from homing.storage.postgres.pool import Conn, Database

# A cursor past every run: list_runs pages backwards from the newest.
_END = 1 << 62


async def _steps_upto(conn: Conn, run_seq: int, step_count: int, upto: str | None) -> list[RunStep]:
    last = step_count - 1
    if upto is not None:
        found = await conn.fetchval(Q["step_position"], run_seq, upto)
        if found is not None:
            last = found
    return [codec.decode_step(r) for r in await conn.fetch(Q["run_steps"], run_seq, last)]


class WorkflowStore:
    """The workflow-runs part of the storage contract."""

    _db: Database
    _announcer: Announcer

    if TYPE_CHECKING:  # provided by Storage; declared for the type checker only

        def _wake(self, due_ms: int) -> None: ...

    async def start_run(
        self,
        run: NewRun,
        init: NewMessage,
        *,
        now_ms: int,
        dedup_window_ms: int,
        copied: Sequence[RunStep] = (),
    ) -> InsertResult:
        announce = self._announcer.inline()

        async def do(conn: Conn) -> tuple[InsertResult, int | None]:
            seq = await conn.fetchval(
                Q["insert_run"],
                run.account_id,
                run.run_id,
                run.url,
                run.created_ms,
                run.payload,
                run.init_message_id,
                codec.encode_run_config(run.config),
                codec.encode_labels(run.labels),
                run.config.flow.key if run.config.flow else None,
                run.caller_ip,
            )
            if seq is None:
                # Another init of the same id won (on this node or another): it is the run.
                active = await conn.fetchrow(Q["run_active"], run.account_id, run.run_id)
                if active is not None:
                    return InsertResult(active[1], run.url, deduplicated=True), None
                raise RuntimeError("an active run vanished while starting a run of its id")
            for s in copied:
                await conn.execute(
                    Q["insert_step"],
                    seq,
                    s.position,
                    s.message_id,
                    s.call_type,
                    None,
                    s.body,
                    s.created_ms,
                )
            first = init.body if copied else run.payload
            tag = init.spec.workflow
            call_type = tag.call_type if tag is not None else "step"
            await conn.execute(
                Q["insert_step"], seq, len(copied), init.id, call_type, None, first, now_ms
            )
            await conn.execute(Q["set_step_count"], len(copied) + 1, seq)
            [result], earliest = await insert(
                conn, [init], now_ms, dedup_window_ms, announce=announce
            )
            return result, earliest

        result, earliest = await self._db.run(do)
        self._announcer.after_commit(earliest, announced=announce)
        if earliest is not None:
            self._wake(earliest)
        return result

    async def append_to_run(
        self,
        account_id: str,
        run_id: str,
        items: Sequence[RunAppend],
        *,
        now_ms: int,
        dedup_window_ms: int,
    ) -> list[InsertResult] | None:
        announce = self._announcer.inline()

        async def do(conn: Conn) -> tuple[list[InsertResult] | None, int | None]:
            active = await conn.fetchrow(Q["run_active"], account_id, run_id)
            if active is None:
                return None, None
            seq, _, count = active
            keep: list[NewMessage] = []
            results: list[InsertResult | None] = []
            seen: dict[str, str] = {}
            for item in items:
                m = item.message
                if item.step_key is not None:
                    found = seen.get(item.step_key)
                    if found is None:
                        found = await conn.fetchval(Q["step_by_key"], seq, item.step_key)
                    if found is not None:
                        results.append(InsertResult(found, m.url, deduplicated=True))
                        continue
                    seen[item.step_key] = m.id
                if item.listed:
                    await conn.execute(
                        Q["insert_step"],
                        seq,
                        count,
                        m.id,
                        item.call_type,
                        item.step_key,
                        m.body,
                        now_ms,
                    )
                    count += 1
                keep.append(m)
                results.append(None)
            await conn.execute(Q["set_step_count"], count, seq)
            stored, earliest = await insert(conn, keep, now_ms, dedup_window_ms, announce=announce)
            it = iter(stored)
            return [r if r is not None else next(it) for r in results], earliest

        results, earliest = await self._db.run(do)
        self._announcer.after_commit(earliest, announced=announce)
        if earliest is not None:
            self._wake(earliest)
        return results

    async def run_steps(
        self, account_id: str, run_id: str, *, upto_message_id: str | None
    ) -> list[RunStep] | None:
        async def do(conn: Conn) -> list[RunStep] | None:
            # A read: no row lock (appends and run ends take it), one snapshot for both reads.
            row = await conn.fetchrow(Q["latest_run"], account_id, run_id)
            if row is None or row[4] != RunState.STARTED.value:
                return None
            return await _steps_upto(conn, row[0], row[14], upto_message_id)

        return await self._db.run(do)

    async def get_run(self, account_id: str, run_id: str) -> Run | None:
        async def do(conn: Conn) -> Run | None:
            row = await conn.fetchrow(Q["latest_run"], account_id, run_id)
            if row is None:
                return None
            steps = await _steps_upto(conn, row[0], row[14], None)
            return codec.decode_run(row, tuple(steps))

        return await self._db.run(do, transaction=False)

    async def list_runs(
        self, account_id: str, *, filter: RunFilter, cursor: str | None, count: int
    ) -> Page[Run]:
        start = int(cursor) if cursor and cursor.isdigit() and len(cursor) <= 18 else _END
        params = Params(account_id, start)
        conditions = run_where(filter, params)
        sql = compose(Q["list_runs"], conditions, limit=params.add(count + 1))
        rows = await self._db.fetch(sql, *params.values)
        runs = [codec.decode_run(r) for r in rows[:count]]
        more = len(rows) > count
        return Page(runs, str(rows[count - 1][0]) if more and count > 0 else None)

    async def end_run(
        self,
        account_id: str,
        run_id: str,
        *,
        state: RunState,
        now_ms: int,
        result: bytes | None = None,
        failure: str | None = None,
        new_messages: Sequence[NewMessage] = (),
    ) -> RunEnd:
        announce = self._announcer.inline()

        async def do(conn: Conn) -> tuple[RunEnd, int | None]:
            row = await conn.fetchrow(Q["lock_latest_run"], account_id, run_id)
            if row is None:
                return RunEnd(found=False, state=None, changed=False), None
            seq, current = row
            ids = tuple(r[0] for r in await conn.fetch(Q["run_message_ids"], seq))
            if current != RunState.STARTED.value:
                return RunEnd(True, RunState(current), False, ids), None
            await conn.execute(Q["end_run"], state.value, now_ms, result, failure, seq)
            _, earliest = await insert(conn, new_messages, now_ms, 0, announce=announce)
            return RunEnd(True, state, True, ids), earliest

        end, earliest = await self._db.run(do)
        self._announcer.after_commit(earliest, announced=announce)
        if earliest is not None:
            self._wake(earliest)
        return end
