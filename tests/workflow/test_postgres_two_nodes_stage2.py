"""Stage 2 of Upstash Workflow on two `homing serve` nodes sharing one PostgreSQL schema: the
published TypeScript SDK (tests/workflow/ts/app.ts) publishes through the first node, and
either node delivers any message, the parent's and the invoked child's alike."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.multinode.support import Credentials
from tests.reliability.support import HomingProcess
from tests.support.server import postgres_or_skip
from tests.workflow.support import (
    WorkflowApp,
    homing_tail,
    qstash_env,
    require_ts_app,
    ts_app,
    two_postgres_nodes,
)


@contextmanager
def app_on(tmp_path: Path, nodes: list[HomingProcess], creds: Credentials) -> Iterator[WorkflowApp]:
    env = qstash_env(nodes[0].base_url, creds.token, creds.current_key, creds.next_key)
    diagnostics = lambda: "\n".join(homing_tail(n) for n in nodes)  # noqa: E731
    with ts_app(tmp_path, env, name="ts-two-nodes-stage2", diagnostics=diagnostics) as app:
        yield app


def test_two_postgres_nodes_return_an_invoked_childs_value_once(tmp_path: Path) -> None:
    postgres_or_skip()
    require_ts_app()
    creds = Credentials()
    with (
        two_postgres_nodes(tmp_path, creds, "stage2") as nodes,
        app_on(tmp_path, nodes, creds) as app,
    ):
        runs = [app.trigger("invoke/invoke-parent", {"n": n}) for n in (5, 21)]

        for n, run in zip((5, 21), runs, strict=True):
            [results] = app.wait_for(
                "the parent's invoke results",
                lambda r=run: app.events(r, "invoke-results"),
                timeout=30,
            )
            assert results["ok"] == {
                "body": {"doubled": 2 * n},
                "isFailed": False,
                "isCanceled": False,
            }
            assert results["failed"] == {"isFailed": True, "isCanceled": False}
            app.completed(run, timeout=30)

        time.sleep(0.5)  # a duplicate delivery by the other node would show up by now
        for run in runs:
            assert len(app.events(run, "invoke-results")) == 1
            assert len(app.events(run, "completed")) == 1
