"""The agent workspace's test harness: signed-in browsers and HTTP clients, and Chromium.

Browser tests drive Debian's Chromium (``apt-get install chromium``, done by ``.ci/run``)
through Playwright; Playwright's own browser download is never used.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import unicodedata
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import tests.conftest as harness
from tests.conftest import Api, Server, wait_for
from tests.core.test_api_channel import create_channel, message, message_visible, timeline
from tests.helpers import post_api_message

CHROMIUM = os.environ.get("HILO_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRE_BROWSER = os.environ.get("HILO_REQUIRE_BROWSER") == "1"
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf-token" content="([^"]+)"|name="csrf_token" value="([^"]+)"')


@dataclass
class Agent:
    """A user of a test workspace who signs in with e-mail and password."""

    id: str
    email: str
    name: str
    password: str = PASSWORD


def add_user(api: Api, *, role: str = "agent", name: str = "Ana Beltrán") -> Agent:
    """A user of the api's workspace, made through the REST API."""
    first = (
        unicodedata.normalize("NFKD", name.split()[0].lower()).encode("ascii", "ignore").decode()
    )
    email = f"{first}.{uuid.uuid4().hex[:6]}@example.com"
    response = api.post(
        "/api/v1/users", json={"email": email, "password": PASSWORD, "role": role, "name": name}
    )
    assert response.status_code == 201, response.text
    return Agent(response.json()["id"], email, name)


def csrf_of(html: str) -> str:
    """The CSRF token a page carries."""
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1) or found.group(2)


class Browser(httpx.Client):
    """An HTTP client holding a workspace session cookie, like a signed-in browser."""

    csrf: str

    def post_form(self, url: str, data: dict[str, Any], **kwargs: Any) -> httpx.Response:
        """A POST as the page's HTMX would send it (CSRF header included)."""
        headers = {"X-CSRF-Token": self.csrf, "HX-Request": "true", **kwargs.pop("headers", {})}
        return self.post(url, data=data, headers=headers, **kwargs)


def sign_in(server: Server, agent: Agent, **client: Any) -> Browser:
    """Sign in through the form, as a person would; fails the test if it does not work."""
    client.setdefault("headers", {"Accept-Language": "en"})
    browser = Browser(base_url=server.base_url, timeout=15, follow_redirects=False, **client)
    page = browser.get("/login")
    response = browser.post(
        "/login",
        data={"csrf_token": csrf_of(page.text), "email": agent.email, "password": agent.password},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/app/inbox"
    browser.csrf = csrf_of(browser.get("/app/inbox").text)
    return browser


@dataclass
class Thread:
    """A customer who wrote once, and their conversation."""

    channel: dict[str, Any]
    contact: dict[str, Any]
    conversation_id: str
    message_id: str


def customer_writes(
    api: Api,
    text: str,
    *,
    channel: dict[str, Any] | None = None,
    sender: str | None = None,
    **who: Any,
) -> Thread:
    """A signed webhook from the company's app, processed by the worker."""
    channel = channel or create_channel(api)
    sent = post_api_message(
        api,
        channel["id"],
        channel["secret"],
        message(sender or f"u-{uuid.uuid4().hex[:8]}", text, **who),
    )
    assert sent.status_code == 200, sent.text
    message_id = sent.json()["message_id"]
    contact = wait_for(lambda: message_visible(api, message_id), message="message processed")
    conversation_id = next(
        m["conversation_id"] for m in timeline(api, contact["id"]) if m["id"] == message_id
    )
    return Thread(channel, contact, conversation_id, message_id)


# -- Chromium ----------------------------------------------------------------------------------


def _run_beside_playwright(coro: Any) -> Any:
    # Playwright's sync API keeps an event loop running in the test thread, where
    # asyncio.run() refuses to start another one: run the harness's coroutines in a thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(autouse=True)
def _harness_beside_playwright(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "run", _run_beside_playwright)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per test module (Debian's, driven by Playwright). Not for the
    whole session: while Playwright runs, its event loop occupies the test thread."""
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        if REQUIRE_BROWSER:
            pytest.fail(f"Chromium is required but missing at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser tab (own cookies) at a laptop size; every JavaScript dialog is kept,
    so a test can assert that none opened."""
    context = chromium.new_context(viewport={"width": 1366, "height": 850}, locale="en-GB")
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    tab.dialogs = []  # type: ignore[attr-defined]

    def on_dialog(dialog: Any) -> None:
        tab.dialogs.append(dialog.message)  # type: ignore[attr-defined]
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    tab.errors = []  # type: ignore[attr-defined]
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))  # type: ignore[attr-defined]
    yield tab
    context.close()


def browser_sign_in(tab: Any, server: Server, agent: Agent) -> None:
    """Sign in through the sign-in form."""
    tab.goto(server.base_url + "/login")
    tab.get_by_label("E-mail").fill(agent.email)
    tab.get_by_label("Password").fill(agent.password)
    tab.locator("form button[type=submit]").first.click()
    tab.wait_for_url("**/app/inbox")
