"""The workflow client API and `context.invoke` with the published TypeScript SDK.

The same app as tests/workflow/test_typescript_workflows.py (tests/workflow/ts/app.ts), its own
`homing dev` for this module: a run invokes other workflows and gets their ends back as steps.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.support import HomingProcess
from tests.support.receiver import Receiver
from tests.workflow.support import (
    THIRD_PARTY_PATH,
    WorkflowApp,
    homing_tail,
    qstash_env,
    ts_app,
)


@pytest.fixture(scope="module")
def app(
    homing: HomingProcess, third_party: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkflowApp]:
    tmp = tmp_path_factory.mktemp("app-ts-client")
    env = qstash_env(homing.base_url) | {"THIRD_PARTY_URL": third_party.url(THIRD_PARTY_PATH)}
    with ts_app(tmp, env, diagnostics=lambda: homing_tail(homing)) as found:
        yield found


def test_an_invoked_child_returns_its_value_and_a_failing_child_its_failure(
    app: WorkflowApp,
) -> None:
    run = app.trigger("invoke/invoke-parent", {"n": 21})

    [results] = app.wait_for(
        "the parent's invoke results", lambda: app.events(run, "invoke-results"), timeout=20
    )

    assert results["ok"] == {"body": {"doubled": 42}, "isFailed": False, "isCanceled": False}
    assert results["failed"] == {"isFailed": True, "isCanceled": False}
    app.completed(run)
