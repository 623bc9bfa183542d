"""The pure rules of Upstash Workflow runs: control headers, run headers, the step list, the
identity of step results, how a run's configuration reaches its messages, what a run's failure
sends and what the run end answers."""

from __future__ import annotations

import base64

import orjson
import pytest

from homing.errors import InvalidRequest, NotFound
from homing.headers import parse_options
from homing.models import (
    CallbackSpec,
    DeliverySpec,
    Message,
    MessageState,
    NewMessage,
    Response,
    Run,
    RunConfig,
    RunEnd,
    RunState,
    RunStep,
    WorkflowTag,
)
from homing.workflow import control, runs, steps

URL = "https://app.example/wf"
T0 = 1_700_000_000_000


def read(**headers: str) -> control.Control | None:
    return control.read(list(headers.items()))


# -- control headers --------------------------------------------------------------------------


def test_a_message_without_a_run_id_belongs_to_no_run() -> None:
    assert read(**{"Upstash-Workflow-Init": "true"}) is None
    assert control.read([("Upstash-Forward-Upstash-Workflow-RunId", "wfr_x")]) is None


def test_control_is_read_case_insensitively_without_the_raw_sdk_version() -> None:
    found = control.read(
        [
            ("upstash-workflow-init", "true"),
            ("Upstash-Workflow-Runid", "wfr_abc"),
            ("upstash-feature-set", "LazyFetch,InitialBody,WF_DetectTrigger"),
        ]
    )
    assert found == control.Control(
        run_id="wfr_abc",
        init=True,
        features=("LazyFetch", "InitialBody", "WF_DetectTrigger"),
    )
    assert found.has(control.DETECT_TRIGGER) and not found.takes_run_config


def test_trigger_config_applies_unless_the_message_keeps_its_own() -> None:
    on = read(**{"Upstash-Workflow-RunId": "r", "Upstash-Feature-Set": "WF_TriggerOnConfig"})
    kept = read(
        **{"Upstash-Workflow-RunId": "r", "Upstash-Feature-Set": "WF_TriggerOnConfig,WF_StepConfig"}
    )
    assert on is not None and on.takes_run_config
    assert kept is not None and not kept.takes_run_config


@pytest.mark.parametrize("run_id", ["a/b", "a?b", "a#b", "x" * 300])
def test_run_ids_that_cannot_be_a_path_segment_are_refused(run_id: str) -> None:
    with pytest.raises(InvalidRequest):
        read(**{"Upstash-Workflow-RunId": run_id})


def test_run_headers_leave_out_workflow_names_and_the_content_type() -> None:
    forwarded = {
        "Ci-Test-Route": ["x"],
        "Upstash-Workflow-Sdk-Version": ["1"],
        "Upstash-Label": ["l"],
        "Content-Type": ["text/plain"],
    }
    assert control.run_headers(forwarded) == {"Ci-Test-Route": ["x"], "Upstash-Label": ["l"]}


def test_delivery_headers_put_the_message_over_the_run_and_homing_over_both() -> None:
    out = control.delivery_headers(
        {"Authorization": ["run"], "X-Run": ["r"]},
        {"authorization": ["own"]},
        run_id="wfr_1",
        created_ms=T0,
        url=URL,
    )
    assert out == {
        "X-Run": ["r"],
        "authorization": ["own"],
        "Upstash-Workflow-RunId": ["wfr_1"],
        "Upstash-Workflow-CreatedAt": [str(T0)],
        "Upstash-Workflow-Url": [URL],
    }


# -- the step list ---------------------------------------------------------------------------


def test_the_step_list_is_padded_standard_base64_with_call_types() -> None:
    listed = [
        RunStep(0, "msg_init", "step", b"\xfb\xff", T0),
        RunStep(1, "msg_2", "toCallback", b"", T0),
    ]
    assert orjson.loads(steps.step_list_body(listed)) == [
        {"messageId": "msg_init", "body": "+/8=", "callType": "step"},
        {"messageId": "msg_2", "body": "", "callType": "toCallback"},
    ]


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"stepId":3,"stepName":"a","stepType":"Run","out":"1"}', "s:3"),
        (b'{"stepId":0,"targetStep":4,"concurrent":2}', "t:4"),
        (b'{"stepId":0,"targetStep":null}', None),
        (b'{"stepId":true}', None),
        (b'{"stepId":"3"}', None),
        (b"[1,2]", None),
        (b"not json", None),
        (b"", None),
    ],
)
def test_a_step_result_is_identified_by_its_step_id_or_its_plan_target(
    body: bytes, key: str | None
) -> None:
    assert steps.step_key(body) == key


# -- the run's configuration on its messages -----------------------------------------------------


def a_run(**config: object) -> Run:
    return Run(
        account_id="acct",
        run_id="wfr_1",
        url=URL,
        state=RunState.STARTED,
        created_ms=T0,
        payload=b'{"in":1}',
        init_message_id="msg_init",
        config=RunConfig(headers={"Ci-Test-Route": ["r"]}, **config),  # type: ignore[arg-type]
        labels=("run-label",),
    )


def a_message(headers: list[tuple[str, str]], body: bytes = b"{}") -> NewMessage:
    options = parse_options(headers)
    spec = DeliverySpec(
        headers=options.headers,
        max_retries=3 if options.max_retries is None else options.max_retries,
        callback=options.callback,
        failure_callback=options.failure_callback,
    )
    return NewMessage("msg_new", "acct", URL, body, spec, T0 + 5, T0 + 5)


def test_a_step_under_trigger_config_takes_the_runs_retries_failure_callback_and_labels() -> None:
    failure = CallbackSpec(URL, {"Upstash-Workflow-Is-Failure": ["true"]})
    run = a_run(retries=7, retry_delay="1000", failure_callback=failure)
    ctl = control.Control("wfr_1", init=False, features=(control.TRIGGER_ON_CONFIG,))

    m = runs.run_message(a_message([("Upstash-Forward-X", "x")]), ctl, run)

    assert m.spec.max_retries == 7 and m.spec.retry_delay == "1000"
    assert m.spec.failure_callback == failure
    assert m.labels == ("run-label",)
    assert m.spec.workflow == WorkflowTag("wfr_1", T0, "step")
    assert m.spec.headers == {
        "Ci-Test-Route": ["r"],
        "X": ["x"],
        "Upstash-Workflow-RunId": ["wfr_1"],
        "Upstash-Workflow-CreatedAt": [str(T0)],
        "Upstash-Workflow-Url": [URL],
    }


def test_a_step_without_trigger_config_keeps_its_own_configuration() -> None:
    run = a_run(retries=7)
    m = runs.run_message(
        a_message([("Upstash-Retries", "1")]), control.Control("wfr_1", False), run
    )
    assert m.spec.max_retries == 1


def test_a_call_keeps_its_configuration_and_its_callback_becomes_a_message_of_the_run() -> None:
    run = a_run(retries=5)
    headers = [
        ("Upstash-Retries", "0"),
        ("Upstash-Forward-X-Call", "c"),
        ("Upstash-Callback", URL),
        ("Upstash-Callback-Workflow-RunId", "wfr_1"),
        ("Upstash-Callback-Workflow-CallType", "fromCallback"),
        ("Upstash-Callback-Feature-Set", "LazyFetch,WF_TriggerOnConfig"),
        ("Upstash-Callback-Forward-Upstash-Workflow-Callback", "true"),
    ]
    ctl = control.Control("wfr_1", init=False, call_type="toCallback", features=("WF_NoDelete",))

    m = runs.run_message(a_message(headers), ctl, run)

    assert m.spec.max_retries == 0 and m.spec.headers == {"X-Call": ["c"]}
    assert m.spec.workflow == WorkflowTag("wfr_1", T0, "toCallback", step_list=False)
    cb = m.spec.callback
    assert cb is not None and cb.retries == 5
    assert cb.workflow == WorkflowTag("wfr_1", T0, "fromCallback", step_list=False)
    assert cb.headers["Upstash-Workflow-Callback"] == ["true"]
    assert cb.headers["Ci-Test-Route"] == ["r"]
    assert not runs.fails_run(m.spec)


def test_trigger_detection_fails_only_a_2xx_init_without_the_sdk_header() -> None:
    tag = WorkflowTag("wfr_1", T0, init=True, detect_trigger=True)
    spec = DeliverySpec(workflow=tag)
    assert runs.trigger_not_detected(spec, Response(200, {}, b"hello"))
    assert not runs.trigger_not_detected(
        spec, Response(200, {"Upstash-Workflow-Sdk-Version": ["1"]})
    )
    assert not runs.trigger_not_detected(spec, Response(500))
    later = DeliverySpec(workflow=WorkflowTag("wfr_1", T0, detect_trigger=True))
    assert not runs.trigger_not_detected(later, Response(200))


def test_the_failure_callback_carries_the_run_and_its_initial_payload() -> None:
    run = a_run(failure_callback=CallbackSpec(URL, {"Upstash-Workflow-Is-Failure": ["true"]}))
    spec = DeliverySpec(max_retries=0, workflow=WorkflowTag("wfr_1", T0))
    failed = Message(
        "msg_step", "acct", URL, b"[]", spec, MessageState.ACTIVE, T0, T0, T0, attempts=0
    )
    cb = runs.failure_callback(
        failed,
        Response(500, {"X": ["y"]}, b"boom"),
        run,
        dlq_id="dlq_1",
        now_ms=T0 + 9,
        new_id=lambda: "msg_fcb",
        max_body=100,
    )
    assert cb is not None and cb.url == URL and cb.id == "msg_fcb"
    doc = orjson.loads(cb.body)
    assert doc["workflowRunId"] == "wfr_1" and doc["workflowCreatedAt"] == T0
    assert base64.b64decode(doc["sourceBody"]) == b'{"in":1}'
    assert (doc["status"], doc["header"], doc["url"], doc["dlqId"]) == (
        500,
        {"X": ["y"]},
        URL,
        "dlq_1",
    )
    assert cb.spec.headers["Upstash-Workflow-RunId"] == ["wfr_1"]
    assert cb.spec.headers["Upstash-Workflow-Is-Failure"] == ["true"]
    assert cb.spec.workflow is not None and cb.spec.workflow.call_type == "failureCall"
    assert not runs.fails_run(cb.spec)


# -- the run end --------------------------------------------------------------------------------


def test_the_run_end_answers_200_404_or_400() -> None:
    runs.end_answer(RunEnd(True, RunState.SUCCESS, True), RunState.SUCCESS)
    runs.end_answer(RunEnd(True, RunState.SUCCESS, False), RunState.SUCCESS)  # again: 200
    runs.end_answer(RunEnd(True, RunState.CANCELED, False), RunState.CANCELED)
    with pytest.raises(NotFound):
        runs.end_answer(RunEnd(False, None, False), RunState.SUCCESS)
    with pytest.raises(InvalidRequest):
        runs.end_answer(RunEnd(True, RunState.CANCELED, False), RunState.SUCCESS)
    with pytest.raises(InvalidRequest):
        runs.end_answer(RunEnd(True, RunState.FAILED, False), RunState.CANCELED)
