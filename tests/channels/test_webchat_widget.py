"""The widget's own JavaScript in a real browser (Chromium through Playwright).

A local HTTP server plays the company's site: one page with the ``<script>`` tag, on another
origin than Hilo's. The agent answers through the API, as in the other web chat tests.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.channels.test_webchat import (
    conversation_of,
    create_webchat,
    message_in,
    reply,
    wait_message,
)
from tests.conftest import Api, wait_for
from tests.core.test_api_channel import timeline

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT_MS = 15_000

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")


class Site:
    """The company's site: serves one page that embeds the widget."""

    def __init__(self) -> None:
        self.page = b""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(site.page)))
                self.end_headers()
                self.wfile.write(site.page)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def embed(self, api: Api, channel: dict[str, Any], lang: str = "es") -> None:
        self.page = (
            f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            "<title>Rent a Car Sur</title></head><body><h1>Rent a Car Sur</h1>"
            f'<script src="{api.base_url}/widget/{channel["id"]}.js" async></script>'
            "</body></html>"
        ).encode()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site()
    yield served
    served.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def chat(page: Any, text: str) -> None:
    """Type a message in the open widget and send it with Enter."""
    box = page.get_by_label("Tu mensaje")
    box.fill(text)
    box.press("Enter")


def test_widget_chats_live_and_keeps_the_conversation_across_page_loads(
    api: Api, site: Site, browser: Any
) -> None:
    channel = create_webchat(api, allowed_origins=[site.origin], email_fallback=False)
    site.embed(api, channel)
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(site.origin)
    bubble = page.get_by_role("button", name="Abrir el chat")
    bubble.click()
    assert bubble.get_attribute("aria-expanded") == "true"
    chat(page, "Hola, ¿tenéis coches para mañana?")
    log = page.get_by_role("log")
    log.get_by_text("Hola, ¿tenéis coches para mañana?").wait_for()

    contact = wait_for(
        lambda: (api.get("/api/v1/contacts").json()["items"] or [None])[0],
        message="the visitor's contact",
    )
    first = timeline(api, contact["id"])[0]
    conversation_id = conversation_of(api, contact["id"])
    # Agent text is text, never markup: no script of theirs runs on the company's page.
    trap = '<img src=x onerror="window.hacked=1">'
    answer = reply(api, conversation_id, f"Sí, tenemos {trap}")
    log.get_by_text(f"Sí, tenemos {trap}").wait_for()
    assert page.evaluate("window.hacked") is None
    # Shown with the chat open on a visible page: read.
    wait_message(api, conversation_id, answer["id"], lambda m: m["status"] == "read")

    page.reload()
    page.get_by_role("button", name="Abrir el chat").click()
    page.get_by_role("log").get_by_text(f"Sí, tenemos {trap}").wait_for()
    chat(page, "Perfecto, lo reservo")
    second = wait_for(
        lambda: next(
            (i for i in timeline(api, contact["id"]) if i["text"] == "Perfecto, lo reservo"), None
        ),
        message="the second page's message",
    )
    assert second["conversation_id"] == first["conversation_id"]
    assert len(api.get("/api/v1/contacts").json()["items"]) == 1
    assert message_in(api, conversation_id, first["id"])["channel_id"] == channel["id"]


def test_widget_falls_back_to_long_polling_without_websockets(
    api: Api, site: Site, browser: Any
) -> None:
    channel = create_webchat(api, email_fallback=False)
    site.embed(api, channel, lang="en")
    context = browser.new_context()
    # A browser (or a proxy) without WebSockets.
    context.add_init_script("delete window.WebSocket;")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(site.origin)
    page.get_by_role("button", name="Open chat").click()
    box = page.get_by_label("Your message")
    box.fill("Do you rent child seats?")
    box.press("Enter")
    page.get_by_role("log").get_by_text("Do you rent child seats?").wait_for()
    contact = wait_for(
        lambda: (api.get("/api/v1/contacts").json()["items"] or [None])[0],
        message="the visitor's contact",
    )
    reply(api, conversation_of(api, contact["id"]), "Yes, for every age")
    page.get_by_role("log").get_by_text("Yes, for every age").wait_for()
    # Having written, the visitor is offered to leave an e-mail for answers after they leave.
    email = page.get_by_label("Your e-mail")
    email.fill("kim@example.org")
    email.press("Enter")
    page.get_by_text("If you leave, we will answer at kim@example.org.").wait_for()
    found = wait_for(
        lambda: [
            i
            for i in api.get(f"/api/v1/contacts/{contact['id']}").json()["identities"]
            if i["kind"] == "email"
        ],
        message="the e-mail reaches the contact",
    )
    assert found == [
        {"kind": "email", "value": "kim@example.org", "verified": False, "channel_id": None}
    ]
    context.close()


def test_reply_to_a_closed_chat_is_delivered_and_counted_until_opened(
    api: Api, site: Site, browser: Any
) -> None:
    channel = create_webchat(api, email_fallback=False)
    site.embed(api, channel)
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(site.origin)
    page.get_by_role("button", name="Abrir el chat").click()
    chat(page, "¿Hay parking?")
    page.get_by_role("log").get_by_text("¿Hay parking?").wait_for()
    # Escape closes the chat and gives the focus back to the bubble.
    page.keyboard.press("Escape")
    bubble = page.get_by_role("button", name="Abrir el chat")
    assert bubble.get_attribute("aria-expanded") == "false"
    focused = "document.activeElement.shadowRoot.activeElement.className"
    assert page.evaluate(focused) == "bubble"
    contact = wait_for(
        lambda: (api.get("/api/v1/contacts").json()["items"] or [None])[0], message="contact"
    )
    conversation_id = conversation_of(api, contact["id"])
    answer = reply(api, conversation_id, "Sí, gratuito")
    page.get_by_role("button", name="Abrir el chat. 1 mensajes sin leer").wait_for()
    wait_message(api, conversation_id, answer["id"], lambda m: m["status"] == "delivered")
    page.get_by_role("button", name="Abrir el chat. 1 mensajes sin leer").click()
    wait_message(api, conversation_id, answer["id"], lambda m: m["status"] == "read")
