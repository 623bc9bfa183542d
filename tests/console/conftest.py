"""Fixtures for the console tests: a headless Chromium driven by Playwright, and sign-in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.console.support import CHROMIUM_ARGS, chromium_or_skip
from tests.support.server import DEV_TOKEN, RunningServer

CSRF = re.compile(r'name="_csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Watched:
    """A page, with every dialog it opened and every script error it raised."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    seen = Watched(page)

    def on_dialog(dialog: Any) -> None:
        seen.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.accept()  # the console's own confirmations are answered "yes"

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: seen.errors.append(str(exc)))

    def on_console(msg: Any) -> None:
        # A 4xx page (a refused sign-in) is logged as a failed load: that is not a script error.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            seen.errors.append(msg.text)

    page.on("console", on_console)
    yield seen
    context.close()


def sign_in_browser(page: Any, server: RunningServer, token: str = DEV_TOKEN) -> None:
    page.goto(server.base_url + "/console/")
    assert "/console/login" in page.url
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(server.base_url + "/console/")


def sign_in_http(server: RunningServer, token: str = DEV_TOKEN) -> httpx.Client:
    """An HTTP client with a console session, signed in through the real form."""
    client = httpx.Client(base_url=server.base_url, timeout=10)
    form = client.get("/console/login")
    match = CSRF.search(form.text)
    assert match, form.text
    done = client.post(
        "/console/login", data={"token": token, "_csrf": match.group(1), "next": "/console/"}
    )
    assert done.status_code == 303, done.text
    return client


def csrf_of(client: httpx.Client, path: str = "/console/queues") -> str:
    match = CSRF.search(client.get(path).text)
    assert match
    return match.group(1)
