"""The pure rules of `context.invoke`, the workflow logs and the workflow DLQ."""

from __future__ import annotations

import itertools

import orjson
import pytest

from homing.errors import PreconditionFailed
from homing.headers import Limits
from homing.models import (
    DeliverySpec,
    Invoker,
    Message,
    MessageState,
    Run,
    RunConfig,
    RunState,
    RunStep,
    WorkflowTag,
)
from homing.workflow import dlq, invoke, logs

URL = "https://app.example/wf/parent"
T0 = 1_700_000_000_000
STEP = {"stepId": 2, "stepName": "call", "stepType": "Invoke", "concurrent": 1}


def invoke_body(**over: object) -> bytes:
    doc = {
        "body": '{"n":1}',
        "headers": {
            "Upstash-Workflow-RunId": ["wfr_parent"],
            "Upstash-Workflow-Url": [URL],
            "Upstash-Workflow-Init": ["false"],
            "Upstash-Forward-Upstash-Workflow-Sdk-Version": ["1"],
            "Authorization": ["Bearer secret"],
        },
        "workflowRunId": "wfr_parent",
        "workflowRunCreatedAt": T0,
        "workflowUrl": URL,
        "step": STEP,
    }
    return orjson.dumps(doc | over)


def run(run_id: str = "wfr_parent", **over: object) -> Run:
    base = Run(
        account_id="acct",
        run_id=run_id,
        url=URL,
        state=RunState.STARTED,
        created_ms=T0,
        payload=b'{"n":1}',
        init_message_id="msg_init",
    )
    return Run(**{**{f: getattr(base, f) for f in base.__slots__}, **over})  # type: ignore[arg-type]


# -- invoke -----------------------------------------------------------------------------------


def test_an_invoke_publish_yields_the_child_payload_and_the_invoker_without_credentials() -> None:
    invoker, payload = invoke.read_request(invoke_body(), {})

    assert payload == b'{"n":1}'
    assert (invoker.run_id, invoker.url, invoker.created_ms) == ("wfr_parent", URL, T0)
    assert "Authorization" not in invoker.headers
    assert orjson.loads(invoker.step) == STEP


def test_a_missing_child_body_is_an_empty_payload_and_a_json_one_its_text() -> None:
    assert invoke.read_request(invoke_body(body=None), {})[1] == b""
    assert invoke.read_request(invoke_body(body={"a": 1}), {})[1] == b'{"a":1}'


@pytest.mark.parametrize(
    ("count", "refused"), [("99", False), ("100", True), ("250", True), ("junk", False)]
)
def test_invoke_depth_is_limited_at_100(count: str, refused: bool) -> None:
    forwarded = {"Upstash-Workflow-Invoke-Count": [count]}
    if refused:
        with pytest.raises(PreconditionFailed, match="depth"):
            invoke.read_request(invoke_body(), forwarded)
    else:
        invoke.read_request(invoke_body(), forwarded)


@pytest.mark.parametrize("body", [b"not json", b"[]", invoke_body(workflowRunId=""),
                                  invoke_body(step="x")])  # fmt: skip
def test_a_malformed_invoke_publish_is_refused(body: bytes) -> None:
    with pytest.raises(PreconditionFailed):
        invoke.read_request(body, {})


@pytest.mark.parametrize(
    ("state", "result", "out"),
    [
        (RunState.SUCCESS, b'"x"', {"body": '"x"', "isFailed": False, "isCanceled": False}),
        (RunState.SUCCESS, b"", {"isFailed": False, "isCanceled": False}),
        (RunState.FAILED, None, {"isFailed": True, "isCanceled": False}),
        (RunState.CANCELED, None, {"isFailed": False, "isCanceled": True}),
    ],
)
def test_the_invoke_result_step_has_explicit_booleans_and_a_body_only_on_success(
    state: RunState, result: bytes | None, out: dict[str, object]
) -> None:
    invoker, _ = invoke.read_request(invoke_body(), {})

    step = orjson.loads(invoke.result_step(invoker, state, result))

    assert {k: step[k] for k in STEP} == STEP
    assert orjson.loads(step["out"]) == out


def test_the_result_is_a_step_of_the_parent_run_to_its_url() -> None:
    invoker, _ = invoke.read_request(invoke_body(), {})
    ids = (f"msg_{i}" for i in itertools.count())

    append = invoke.result_append(
        invoker, run(), RunState.SUCCESS, b"1", now_ms=T0, new_id=lambda: next(ids),
        limits=Limits(),
    )  # fmt: skip

    assert append is not None
    m = append.message
    assert m.url == URL and m.spec.workflow is not None
    assert m.spec.workflow.run_id == "wfr_parent"
    assert m.spec.headers["Upstash-Workflow-RunId"] == ["wfr_parent"]
    assert append.step_key is not None
    assert invoke.result_append(
        invoker, run("wfr_other"), RunState.SUCCESS, b"1", now_ms=T0, new_id=lambda: "m",
        limits=Limits(),
    ) is None  # fmt: skip


# -- logs -------------------------------------------------------------------------------------


def entry(position: int, body: dict[str, object] | bytes) -> RunStep:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return RunStep(position, f"msg_{position}", "step", raw, T0 + position)


def test_logs_group_the_init_sequential_steps_and_parallel_results() -> None:
    listed = (
        entry(0, b'{"n":1}'),
        entry(1, {"stepId": 1, "stepName": "a", "stepType": "Run", "out": "1", "concurrent": 1}),
        entry(2, {"stepId": 0, "stepName": "p", "stepType": "Run", "concurrent": 2,
                  "targetStep": 2}),
        entry(3, {"stepId": 2, "stepName": "p", "stepType": "Run", "out": "2", "concurrent": 2}),
        entry(4, {"stepId": 3, "stepName": "q", "stepType": "Run", "out": "3", "concurrent": 2}),
        entry(5, {"stepId": 4, "stepName": "z", "stepType": "Run", "out": "4", "concurrent": 1}),
        entry(6, b"a call's own body"),
    )  # fmt: skip

    groups = logs.step_groups(run(steps=listed, step_count=7))

    assert [(g["type"], [s["stepName"] for s in g["steps"]]) for g in groups] == [
        ("sequential", ["init", "a"]),
        ("parallel", ["p", "q"]),
        ("sequential", ["z"]),
    ]
    init = groups[0]["steps"][0]
    assert (init["stepType"], init["out"], init["messageId"]) == ("Initial", '{"n":1}', "msg_0")


def test_a_run_in_the_logs_names_its_end_and_its_invoker() -> None:
    inv = Invoker("wfr_p", "https://app.example/wf/p", T0 - 5)
    ended = run(
        state=RunState.SUCCESS, ended_ms=T0 + 9, result=b'"r"',
        config=RunConfig(invoker=inv), labels=("a", "b"),
    )  # fmt: skip

    doc = logs.run_json(ended)

    assert doc["workflowState"] == "RUN_SUCCESS" and doc["workflowRunCompletedAt"] == T0 + 9
    assert doc["workflowRunResponse"] == '"r"'
    assert doc["invoker"] == {"workflowRunId": "wfr_p", "workflowUrl": inv.url,
                              "workflowRunCreatedAt": T0 - 5}  # fmt: skip
    assert doc["labels"] == ["a", "b"]


# -- the workflow DLQ --------------------------------------------------------------------------


def failed_step(message_id: str = "msg_2") -> Message:
    return Message(
        id=message_id,
        account_id="acct",
        url=URL,
        body=b'{"stepId":2}',
        spec=DeliverySpec(
            headers={"Upstash-Workflow-RunId": ["wfr_parent"], "X": ["1"]},
            max_retries=0,
            workflow=WorkflowTag("wfr_parent", T0, "step"),
        ),
        state=MessageState.FAILED,
        created_ms=T0,
        not_before_ms=T0,
        due_ms=None,
        attempts=1,
        dlq_id="dlq_1",
    )


def test_a_resume_copies_the_steps_before_the_failed_message_and_delivers_it_anew() -> None:
    listed = (entry(0, b'{"n":1}'), entry(1, {"stepId": 1, "stepName": "a"}),
              entry(2, {"stepId": 2, "stepName": "b"}))  # fmt: skip
    failed = run(steps=listed, step_count=3, state=RunState.FAILED)

    message, copied = dlq.resumed(
        failed_step(), failed, new_run_id="wfr_new", new_message_id="msg_new", now_ms=T0 + 1,
        retries=4,
    )  # fmt: skip

    assert [s.message_id for s in copied] == ["msg_0", "msg_1"]
    assert message.id == "msg_new" and message.body == b'{"stepId":2}'
    assert message.spec.headers["Upstash-Workflow-RunId"] == ["wfr_new"]
    assert message.spec.headers["Upstash-Workflow-CreatedAt"] == [str(T0 + 1)]
    assert message.spec.headers["X"] == ["1"] and message.spec.max_retries == 4
    assert message.spec.workflow == WorkflowTag("wfr_new", T0 + 1, "step")

    restart, nothing = dlq.resumed(
        failed_step(), failed, new_run_id="wfr_new", new_message_id="msg_new", now_ms=T0 + 1,
        retries=None, restart=True,
    )  # fmt: skip
    assert nothing == [] and restart.body == b'{"n":1}' and restart.spec.max_retries == 0


def test_only_messages_whose_failure_fails_their_run_are_workflow_dlq_entries() -> None:
    assert dlq.is_run_failure(failed_step())
    call = failed_step()
    spec = DeliverySpec(workflow=WorkflowTag("wfr_parent", T0, "toCallback"))
    assert not dlq.is_run_failure(Message(**{**{f: getattr(call, f) for f in call.__slots__},
                                             "spec": spec}))  # fmt: skip
