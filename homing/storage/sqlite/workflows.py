"""Upstash Workflow runs on SQLite (mixed into SqliteStorage).

A run and its step list live in `workflow_runs` / `workflow_steps`; its messages are ordinary
messages (`messages.insert`) stored in the same writer transaction, so a run, its steps and
their deliveries are durable together. The single writer orders appends of one run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

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
from homing.storage.sqlite.core import Core, Q
from homing.storage.sqlite.filters import compose, run_where
from homing.storage.sqlite.messages import insert

# A cursor past every run: list_runs pages backwards from the newest.
_END = 1 << 62


def _steps_upto(
    conn: sqlite3.Connection, run_seq: int, step_count: int, upto: str | None
) -> list[RunStep]:
    last = step_count - 1
    if upto is not None:
        found = conn.execute(Q["step_position"], (run_seq, upto)).fetchone()
        if found is not None:
            last = found[0]
    return [codec.decode_step(r) for r in conn.execute(Q["run_steps"], (run_seq, last))]


class WorkflowStore(Core):
    """The workflow-runs part of the storage contract."""

    async def start_run(
        self,
        run: NewRun,
        init: NewMessage,
        *,
        now_ms: int,
        dedup_window_ms: int,
        copied: Sequence[RunStep] = (),
    ) -> InsertResult:
        def do(conn: sqlite3.Connection) -> tuple[InsertResult, int | None]:
            active = conn.execute(Q["run_active"], (run.account_id, run.run_id)).fetchone()
            if active is not None:
                return InsertResult(active[1], run.url, deduplicated=True), None
            (seq,) = conn.execute(
                Q["insert_run"],
                (
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
                ),
            ).fetchone()
            for s in copied:
                conn.execute(
                    Q["insert_step"],
                    (seq, s.position, s.message_id, s.call_type, None, s.body, s.created_ms),
                )
            first = init.body if copied else run.payload
            tag = init.spec.workflow
            call_type = tag.call_type if tag is not None else "step"
            conn.execute(
                Q["insert_step"],
                (seq, len(copied), init.id, call_type, None, first, now_ms),
            )
            conn.execute(Q["set_step_count"], (len(copied) + 1, seq))
            [result], earliest = insert(conn, self._events, [init], now_ms, dedup_window_ms)
            return result, earliest

        result, earliest = await self._writer.call(do, grows=True)
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
        def do(conn: sqlite3.Connection) -> tuple[list[InsertResult] | None, int | None]:
            active = conn.execute(Q["run_active"], (account_id, run_id)).fetchone()
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
                        row = conn.execute(Q["step_by_key"], (seq, item.step_key)).fetchone()
                        found = None if row is None else row[0]
                    if found is not None:
                        results.append(InsertResult(found, m.url, deduplicated=True))
                        continue
                    seen[item.step_key] = m.id
                if item.listed:
                    conn.execute(
                        Q["insert_step"],
                        (seq, count, m.id, item.call_type, item.step_key, m.body, now_ms),
                    )
                    count += 1
                keep.append(m)
                results.append(None)
            conn.execute(Q["set_step_count"], (count, seq))
            stored, earliest = insert(conn, self._events, keep, now_ms, dedup_window_ms)
            it = iter(stored)
            return [r if r is not None else next(it) for r in results], earliest

        results, earliest = await self._writer.call(do, grows=True)
        if earliest is not None:
            self._wake(earliest)
        return results

    async def run_steps(
        self, account_id: str, run_id: str, *, upto_message_id: str | None
    ) -> list[RunStep] | None:
        def do(conn: sqlite3.Connection) -> list[RunStep] | None:
            active = conn.execute(Q["run_active"], (account_id, run_id)).fetchone()
            if active is None:
                return None
            return _steps_upto(conn, active[0], active[2], upto_message_id)

        return await self._read(do)

    async def get_run(self, account_id: str, run_id: str) -> Run | None:
        def do(conn: sqlite3.Connection) -> Run | None:
            row = conn.execute(Q["latest_run"], (account_id, run_id)).fetchone()
            if row is None:
                return None
            return codec.decode_run(row, tuple(_steps_upto(conn, row[0], row[14], None)))

        return await self._read(do)

    async def list_runs(
        self, account_id: str, *, filter: RunFilter, cursor: str | None, count: int
    ) -> Page[Run]:
        where, params = run_where(filter)
        start = int(cursor) if cursor and cursor.isdigit() and len(cursor) <= 18 else _END
        sql = compose(Q["list_runs"], where)

        def do(conn: sqlite3.Connection) -> Page[Run]:
            rows = conn.execute(sql, [account_id, start, *params, count + 1]).fetchall()
            runs = [codec.decode_run(r) for r in rows[:count]]
            more = len(rows) > count
            return Page(runs, str(rows[count - 1][0]) if more and count > 0 else None)

        return await self._read(do)

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
        def do(conn: sqlite3.Connection) -> tuple[RunEnd, int | None]:
            row = conn.execute(Q["lock_latest_run"], (account_id, run_id)).fetchone()
            if row is None:
                return RunEnd(found=False, state=None, changed=False), None
            seq, current = row
            ids = tuple(m for (m,) in conn.execute(Q["run_message_ids"], (seq,)))
            if current != RunState.STARTED.value:
                return RunEnd(True, RunState(current), False, ids), None
            conn.execute(Q["end_run"], (state.value, now_ms, result, failure, seq))
            _, earliest = insert(conn, self._events, new_messages, now_ms, 0)
            return RunEnd(True, state, True, ids), earliest

        end, earliest = await self._writer.call(do)
        if earliest is not None:
            self._wake(earliest)
        return end
