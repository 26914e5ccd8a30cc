"""The agent workspace in a real headless Chromium, against a real ``hilo serve`` (SQLite)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import Api, Server, wait_for
from tests.core.test_api_channel import create_channel
from tests.helpers import CompanyApp
from tests.web.conftest import add_user, browser_sign_in, customer_writes

# Browser flows run on the SQLite server; what they store is covered on both databases by
# the HTTP tests beside this file.
pytestmark = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


def open_conversation(page: Any, server: Server, conversation_id: str) -> None:
    page.goto(f"{server.base_url}/app/conversations/{conversation_id}?status=any")
    expect(page.locator("#timeline")).to_be_visible()
    # The live stream is connected: later changes must arrive without a reload.
    expect(page.locator("html")).to_have_attribute("data-live", re.compile("ws|sse"))


def test_sign_in_with_email_and_password_opens_the_inbox(
    api: Api, server: Server, page: Any
) -> None:
    agent = add_user(api)
    customer_writes(api, "Hola, necesito ayuda", name="Lucía Romero")
    page.goto(server.base_url + "/app/inbox")
    page.wait_for_url("**/login?next=*")
    page.get_by_label("E-mail").fill(agent.email)
    page.get_by_label("Password").fill("wrong password")
    page.locator("form button[type=submit]").first.click()
    expect(page.get_by_role("alert")).to_contain_text("not right")
    page.get_by_label("Password").fill(agent.password)
    page.locator("form button[type=submit]").first.click()
    page.wait_for_url("**/app/inbox")
    expect(page.locator("#inbox-list")).to_contain_text("Lucía Romero")
    expect(page.locator("#inbox-list")).to_contain_text("Hola, necesito ayuda")
    assert page.dialogs == [] and page.errors == []


def test_message_arriving_while_the_page_is_open_appears_without_reloading(
    api: Api, server: Server, page: Any
) -> None:
    agent = add_user(api)
    thread = customer_writes(api, "Primera pregunta", name="Pablo Sanz", sender="pablo")
    browser_sign_in(page, server, agent)
    open_conversation(page, server, thread.conversation_id)
    page.evaluate("window.__sameDocument = true")
    customer_writes(api, "¿Siguen ahí? Es urgente", channel=thread.channel, sender="pablo")
    expect(page.locator("#timeline")).to_contain_text("¿Siguen ahí? Es urgente", timeout=10_000)
    expect(page.locator("#inbox-list")).to_contain_text("¿Siguen ahí? Es urgente")
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"


def test_message_reaches_a_second_open_tab_too(api: Api, server: Server, chromium: Any) -> None:
    agent = add_user(api)
    thread = customer_writes(api, "Hola", name="Nuria Gil", sender="nuria")
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
    try:
        first, second = context.new_page(), context.new_page()
        browser_sign_in(first, server, agent)
        for tab in (first, second):
            open_conversation(tab, server, thread.conversation_id)
        customer_writes(
            api, "Mensaje para las dos pestañas", channel=thread.channel, sender="nuria"
        )
        for tab in (first, second):
            expect(tab.locator("#timeline")).to_contain_text(
                "Mensaje para las dos pestañas", timeout=10_000
            )
    finally:
        context.close()


def test_reply_goes_out_on_the_channel_the_agent_picks(api: Api, server: Server, page: Any) -> None:
    shop_app, rentals_app = CompanyApp().start(), CompanyApp().start()
    try:
        shop = create_channel(api, callback_url=shop_app.url, name="Shop app")
        rentals = create_channel(api, callback_url=rentals_app.url, name="Rentals app")
        customer_writes(
            api, "Hola desde la tienda", channel=shop, sender="s-1", phone="+34612000111"
        )
        thread = customer_writes(
            api, "Y ahora desde alquileres", channel=rentals, sender="r-1", phone="612 000 111"
        )
        agent = add_user(api)
        browser_sign_in(page, server, agent)
        open_conversation(page, server, thread.conversation_id)
        channel = page.get_by_label("Send on")
        # The customer's last channel is the default.
        expect(channel.locator("option:checked")).to_contain_text("Rentals app")
        channel.select_option(shop["id"])
        page.get_by_label("Message", exact=True).fill("Le contestamos por la app de la tienda")
        page.get_by_label("Message", exact=True).press("Enter")
        wait_for(lambda: shop_app.received, message="reply delivered to the shop app")
        body = json.loads(shop_app.received[0]["body"])
        assert body["text"] == "Le contestamos por la app de la tienda"
        assert rentals_app.received == []
        reply = page.locator("#timeline .msg-out").last
        expect(reply).to_contain_text("Le contestamos por la app de la tienda")
        expect(reply.locator(".badge")).to_have_text("Shop app")
        expect(page.locator("#timeline")).to_contain_text(
            "The customer moved from Shop app to Rentals app."
        )
        expect(page.get_by_label("Message", exact=True)).to_have_value("")
    finally:
        shop_app.stop()
        rentals_app.stop()


def test_assigning_to_me_and_resolving_show_in_the_timeline(
    api: Api, server: Server, page: Any
) -> None:
    agent = add_user(api, name="Sofía Navarro")
    thread = customer_writes(api, "Me han cobrado dos veces", name="Iván Núñez")
    browser_sign_in(page, server, agent)
    open_conversation(page, server, thread.conversation_id)
    page.get_by_role("button", name="Assign to me").click()
    expect(page.get_by_label("Assignee").locator("option:checked")).to_contain_text("Sofía Navarro")
    expect(page.locator("#timeline")).to_contain_text("Sofía Navarro took the conversation.")
    page.get_by_role("button", name=re.compile("Resolve")).click()
    expect(page.locator("#conv-status")).to_have_text("Resolved")
    expect(page.locator("#timeline")).to_contain_text("Sofía Navarro resolved the conversation.")
    stored = api.get(f"/api/v1/conversations/{thread.conversation_id}").json()
    assert stored["status"] == "resolved"
    assert stored["assignee_id"] == agent.id
    trail = [
        e["type"]
        for e in api.get(f"/api/v1/conversations/{thread.conversation_id}/events").json()["items"]
    ]
    assert "conversation.assigned" in trail and "conversation.resolved" in trail


def test_merging_a_suggested_duplicate_moves_everything_to_one_contact(
    api: Api, server: Server, page: Any
) -> None:
    # The same phone, once as a verified phone and once as another app's bare user id.
    first = customer_writes(api, "Soy Marta", name="Marta Jiménez", phone="+34 611 22 33 44")
    second = customer_writes(api, "Hola otra vez", name="Marta J.", sender="34611223344")
    assert first.contact["id"] != second.contact["id"]
    agent = add_user(api)
    browser_sign_in(page, server, agent)
    open_conversation(page, server, first.conversation_id)
    duplicates = page.locator(".duplicates")
    expect(duplicates).to_contain_text("Marta J.")
    expect(duplicates).to_contain_text("same phone")
    duplicates.get_by_role("button", name="Merge…").click()
    expect(page.get_by_role("alertdialog")).to_contain_text("Merge Marta J. into Marta Jiménez?")
    page.get_by_role("button", name="Merge", exact=True).click()
    expect(page.locator(".identities")).to_contain_text("34611223344")
    expect(duplicates.locator(".duplicate")).to_have_count(0)
    expect(page.locator(".past")).to_contain_text("Hola otra vez")
    # The absorbed contact's id now answers with the survivor.
    merged = api.get(f"/api/v1/contacts/{second.contact['id']}").json()
    assert merged["id"] == first.contact["id"]
    assert page.dialogs == []


def test_language_switch_changes_the_whole_workspace_and_sticks(
    api: Api, server: Server, page: Any
) -> None:
    agent = add_user(api)
    thread = customer_writes(api, "Hello", name="James Smith")
    browser_sign_in(page, server, agent)
    open_conversation(page, server, thread.conversation_id)
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("Inbox")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.get_by_role("button", name="ES", exact=True).click()
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.get_by_role("navigation", name="Principal")).to_contain_text("Bandeja de entrada")
    expect(page.get_by_role("button", name="Resolver")).to_be_visible()
    expect(page.get_by_label("Enviar por")).to_be_visible()
    # The choice belongs to the user: a new tab, with an English browser, stays in Spanish.
    other = page.context.browser.new_context(locale="en-US")
    try:
        tab = other.new_page()
        browser_sign_in(tab, server, agent)
        expect(tab.locator("html")).to_have_attribute("lang", "es")
        expect(tab.locator("#inbox-title")).to_have_text("Bandeja de entrada")
    finally:
        other.close()


def test_script_and_onerror_payloads_in_customer_text_stay_inert(
    api: Api, server: Server, page: Any
) -> None:
    payload = (
        "<script>window.__pwned = 1; alert('script')</script>"
        "<img src=x onerror=\"window.__pwned = 2; alert('img')\">"
    )
    name = "<b onmouseover=alert('name')>Eve</b>"
    thread = customer_writes(api, payload, name=name)
    agent = add_user(api)
    browser_sign_in(page, server, agent)
    expect(page.locator("#inbox-list")).to_contain_text(name)
    open_conversation(page, server, thread.conversation_id)
    text = page.locator("#timeline .msg-in .msg-text").first
    expect(text).to_have_text(payload)
    expect(page.locator("#timeline img")).to_have_count(0)
    expect(page.locator("#timeline script")).to_have_count(0)
    expect(page.locator("#conv-name")).to_have_text(name)
    page.locator("#conv-name").hover()
    page.wait_for_timeout(300)  # give an injected handler every chance to run
    assert page.evaluate("window.__pwned === undefined")
    assert page.dialogs == []


def test_keyboard_moves_through_the_inbox_and_opens_with_enter(
    api: Api, server: Server, page: Any
) -> None:
    agent = add_user(api)
    channel = create_channel(api)
    for name in ("Primero Pérez", "Segunda Sanz", "Tercero Toledo"):
        customer_writes(api, f"Hola, soy {name}", channel=channel, name=name)
    browser_sign_in(page, server, agent)
    page.keyboard.press("j")
    expect(page.locator(".row-link").first).to_be_focused()
    page.keyboard.press("j")
    expect(page.locator(".row-link").nth(1)).to_be_focused()
    page.keyboard.press("k")
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    expect(page.locator("#conv-name")).to_have_text("Segunda Sanz")
    expect(page).to_have_url(re.compile(r"/app/conversations/"))
    page.keyboard.press("Escape")  # leaves the reply box
    page.keyboard.press("/")
    expect(page.locator("#q")).to_be_focused()
    page.keyboard.type("Tercero")
    expect(page.locator("#inbox-list .row-name")).to_have_text(["Tercero Toledo"])


UNLABELLED = """
() => Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button'))
  .filter((el) => !el.closest('[hidden]'))
  .filter((el) => {
    const named = el.labels && el.labels.length ||
      el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') ||
      (el.tagName === 'BUTTON' && el.textContent.trim());
    return !named;
  })
  .map((el) => el.outerHTML.slice(0, 120))
"""


def test_every_control_has_a_name_and_the_layout_fits_a_tablet(
    api: Api, server: Server, page: Any
) -> None:
    thread = customer_writes(api, "Hola", name="Ana Torres")
    agent = add_user(api, role="admin")
    browser_sign_in(page, server, agent)
    for path in (
        f"/app/conversations/{thread.conversation_id}",
        "/app/settings",
        "/app/admin/channels",
        "/app/admin/people",
        "/app/admin/canned",
    ):
        page.goto(server.base_url + path)
        assert page.evaluate(UNLABELLED) == [], path
    page.set_viewport_size({"width": 820, "height": 1180})
    page.goto(f"{server.base_url}/app/conversations/{thread.conversation_id}")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 820, "the page scrolls sideways on a tablet"
    expect(page.get_by_label("Message", exact=True)).to_be_visible()
    page.get_by_role("button", name="Customer details").click()
    expect(page.locator("#panel")).to_be_in_viewport()
