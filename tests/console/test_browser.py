"""The console in a real headless Chromium, against a real Homing and a real receiver."""

from __future__ import annotations

from typing import Any

from tests.conftest import ServerFactory
from tests.console.conftest import Watched, sign_in_browser
from tests.console.support import (
    FailingSteps,
    api,
    dlq_ids,
    down_destination,
    eventually,
    fail_run,
    publish,
)
from tests.support.receiver import Receiver, Reply
from tests.support.workflows import publish_step, start_run


def _row(page: Any, text: str) -> Any:
    return page.locator("tbody tr", has_text=text)


def _reload_until(page: Any, locator: Any) -> None:
    """Lists are not live: reload until the awaited row shows (as a person would)."""

    def shown() -> bool:
        if locator.count():
            return True
        page.reload()
        return False

    eventually(shown)


def test_sign_in_then_watch_a_published_message_appear(
    start_server: ServerFactory, receiver: Receiver, watched: Watched
) -> None:
    server = start_server(mode="serve")
    page = watched.page
    page.goto(server.base_url + "/console/messages")
    assert "/console/login" in page.url  # serve mode: nothing before signing in
    assert page.locator("table").count() == 0
    page.fill("input[name=token]", "not-a-token")
    page.click("button[type=submit]")
    assert page.locator(".notice.error").inner_text() == "That token is not valid."
    sign_in_browser(page, server)
    assert page.locator("[data-stat='hour.published']").inner_text() == "0"

    message_id = publish(api(server), receiver.url("/hello"), "hi")
    receiver.wait_for(1, "/hello")
    # The overview polls its JSON endpoint: the count changes without a reload.
    # (Polled from Python: the page's CSP rightly refuses Playwright's eval-based waits.)
    published = page.locator("[data-stat='hour.published']")
    eventually(lambda: published.inner_text() == "1")
    page.click("nav >> text=Messages")
    row = _row(page, "DELIVERED").filter(has_text=message_id)
    _reload_until(page, row)
    row.locator("a", has_text=message_id).click()
    page.wait_for_url(f"**/console/messages/{message_id}")
    assert "DELIVERED" in page.locator("h1").inner_text()
    assert page.locator("pre.body").first.inner_text() == "hi"
    assert not watched.errors


def test_read_a_failure_then_retry_it_from_the_dlq(
    start_server: ServerFactory, receiver: Receiver, watched: Watched
) -> None:
    server = start_server(mode="serve")
    switch = down_destination(receiver)
    client = api(server)
    failed = publish(client, receiver.url("/down"), '{"n":1}', **{"Upstash-Retries": "0"})
    eventually(lambda: failed in dlq_ids(client))
    page = watched.page
    sign_in_browser(page, server)

    page.goto(f"{server.base_url}/console/messages/{failed}")
    assert "FAILED" in page.locator("h1").inner_text()
    timeline = page.locator(".timeline")
    assert "HTTP 500" in timeline.inner_text()
    answer = timeline.locator("details.response[open] pre.body")
    assert answer.inner_text() == '{"error":"database is down","code":"E_DB"}'
    assert "r-81" in timeline.locator("details.response[open] table").inner_text()

    switch.up = True
    page.click("nav >> text=DLQ")
    row = _row(page, failed)
    assert "500" in row.inner_text()
    row.locator("button", has_text="Retry").click()
    page.wait_for_url("**/console/dlq")
    assert page.locator(".notice").inner_text() == "Retried 1 message."
    assert any("Retry message" in d for d in watched.dialogs)  # it asked first
    assert _row(page, failed).count() == 0
    assert failed not in dlq_ids(client)

    receiver.wait_for(2, "/down")
    page.goto(server.base_url + "/console/messages?state=DELIVERED")
    delivered = _row(page, receiver.url("/down"))
    _reload_until(page, delivered)
    delivered.first.locator("td.mono a").click()
    assert "DELIVERED" in page.locator("h1").inner_text()
    assert '{"ok":true}' in page.locator(".timeline").inner_text()
    assert not watched.errors


def test_create_then_pause_a_schedule(
    start_server: ServerFactory, receiver: Receiver, watched: Watched
) -> None:
    server = start_server(mode="serve")
    page = watched.page
    sign_in_browser(page, server)
    page.click("nav >> text=Schedules")
    page.fill("input[name=destination]", receiver.url("/tick"))
    page.fill("input[name=tz]", "Asia/Tokyo")
    page.fill("input[name=cron]", "0 9 * * *")
    fires = page.locator("[data-cron-preview] li")
    fires.nth(4).wait_for()  # the live preview of the next five fires
    assert fires.count() == 5
    assert all(":00:00 JST" in text and "00:00:00 UTC" in text for text in fires.all_inner_texts())
    page.fill("input[name=scheduleId]", "morning-report")
    page.click("button:has-text('Create schedule')")
    assert page.locator(".notice").inner_text() == "Schedule morning-report created."
    row = page.locator("tr#morning-report")
    assert "Asia/Tokyo" in row.inner_text() and "0 9 * * *" in row.inner_text()

    row.locator("button", has_text="Pause").click()
    assert page.locator(".notice").inner_text() == "Schedule morning-report paused."
    assert "PAUSED" in page.locator("tr#morning-report").inner_text()
    stored = api(server).get("/v2/schedules/morning-report").json()
    assert stored["isPaused"] is True
    assert stored["cron"] == "CRON_TZ=Asia/Tokyo 0 9 * * *"
    assert page.locator("tr#morning-report button", has_text="Resume").count() == 1
    assert not watched.errors


def test_a_script_in_a_payload_is_only_text(
    start_server: ServerFactory, receiver: Receiver, watched: Watched
) -> None:
    server = start_server(mode="serve")
    payload = "<script>window.__pwned = 1; alert('xss')</script><img src=x onerror=alert(2)>"
    message_id = publish(
        api(server),
        receiver.url("/ok"),
        payload,
        **{"Upstash-Forward-X-Note": "<svg onload=alert(3)>", "Upstash-Label": "xss"},
    )
    receiver.wait_for(1, "/ok")
    page = watched.page
    sign_in_browser(page, server)
    page.goto(f"{server.base_url}/console/messages/{message_id}")
    assert page.locator("pre.body").first.inner_text() == payload
    assert "<svg onload=alert(3)>" in page.locator("table.kv").nth(1).inner_text()
    page.goto(server.base_url + "/console/messages?label=xss")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main script, main img, main svg[onload]").count() == 0
    assert watched.dialogs == []


def test_bulk_retry_and_the_key_reveal_in_dev_mode(
    start_server: ServerFactory, receiver: Receiver, watched: Watched
) -> None:
    server = start_server()  # dev mode: no sign-in
    switch = down_destination(receiver)
    client = api(server)
    ids = [
        publish(client, receiver.url("/down"), f"m{n}", **{"Upstash-Retries": "0"})
        for n in range(2)
    ]
    eventually(lambda: set(ids) <= set(dlq_ids(client)))
    switch.up = True
    page = watched.page
    page.goto(server.base_url + "/console/dlq")
    page.check("[data-select-all]")
    assert page.locator("input[name=dlqId]:checked").count() == 2
    page.click("button:has-text('Retry selected')")
    assert page.locator(".notice").inner_text() == "Retried 2 messages."
    assert watched.dialogs == ["confirm: Retry the selected messages?"]
    receiver.wait_for(4, "/down")

    page.click("nav >> text=Signing keys")
    current = page.locator("[data-key=current]")
    assert current.inner_text() == "sig_7kYj…"
    page.click("[data-reveal]")
    eventually(lambda: current.inner_text() == "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r")
    page.click("[data-reveal]")
    assert current.inner_text() == "sig_7kYj…"
    assert not watched.errors


def test_find_a_workflow_run_read_its_steps_then_cancel_it(
    start_server: ServerFactory, receiver: Receiver, watched: Watched
) -> None:
    server = start_server(mode="serve")
    receiver.on("/wf", lambda _: Reply(200, b"{}", {"Upstash-Workflow-Sdk-Version": "1"}))
    client = api(server)
    payload = "<script>window.__pwned = 1</script>"
    start_run(client, "wfr_browser", receiver.url("/wf"), payload)
    receiver.wait_for(1, "/wf")
    step = {"stepId": 1, "stepName": "reserve stock", "stepType": "Run", "out": "3"}
    publish_step(client, "wfr_browser", receiver.url("/wf"), step).raise_for_status()
    page = watched.page
    sign_in_browser(page, server)

    page.click("nav >> text=Workflow runs")
    page.select_option("select[name=state]", "RUN_STARTED")
    page.click("button:has-text('Search')")
    page.locator("tbody tr", has_text="RUN_STARTED").locator("a", has_text="wfr_browser").click()
    page.wait_for_url("**/console/runs/wfr_browser")
    steps = page.locator("[data-list=steps] > li")
    assert steps.count() == 2 and "reserve stock" in steps.nth(1).inner_text()
    assert page.locator("[data-run=payload] pre.body").inner_text() == payload
    page.click("button:has-text('Cancel run')")
    assert page.locator(".notice").inner_text() == "Run canceled."
    assert "RUN_CANCELED" in page.locator("h1").inner_text()
    assert watched.dialogs == ["confirm: Cancel workflow run wfr_browser?"]
    assert page.evaluate("window.__pwned") is None
    assert not watched.errors


def test_resume_a_failed_workflow_run_from_the_dlq(
    start_server: ServerFactory, receiver: Receiver, watched: Watched
) -> None:
    server = start_server(mode="serve")
    app = FailingSteps()
    receiver.on("/wf", app)
    fail_run(api(server), receiver, "wfr_resume_me")
    page = watched.page
    sign_in_browser(page, server)

    page.click("nav >> text=DLQ")
    _row(page, "wfr_resume_me").locator("button", has_text="Resume").click()

    page.wait_for_url("**/console/runs/wfr_*")
    new_run = page.url.rsplit("/", 1)[1]
    assert new_run != "wfr_resume_me"
    assert page.locator(".notice").inner_text() == f"Resumed run wfr_resume_me as {new_run}."
    assert watched.dialogs == ["confirm: Resume workflow run wfr_resume_me under a new run id?"]
    eventually(lambda: app.of_run(new_run))
    assert not watched.errors
