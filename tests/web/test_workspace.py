"""The workspace's pages over HTTP, on SQLite and PostgreSQL: what an agent sees and does."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.channels.test_whatsapp import (
    TEMPLATES,
    FakeGraph,
    create_whatsapp,
    new_wa_id,
)
from tests.channels.test_whatsapp import customer_writes as whatsapp_customer_writes
from tests.conftest import Api, Server, wait_for
from tests.core.test_api_channel import create_channel, message
from tests.core.test_conversations import age_resolution
from tests.helpers import CompanyApp, post_api_message
from tests.web.conftest import Browser, add_user, customer_writes, sign_in


def rows(html: str) -> list[str]:
    """The contact names of the inbox rows, in order."""
    return re.findall(r'<span class="row-name">([^<]*)</span>', html)


def inbox(browser: Browser, **params: str) -> list[str]:
    response = browser.get("/app/inbox/list", params=params)
    assert response.status_code == 200, response.text
    return rows(response.text)


def test_inbox_views_filters_and_search_find_the_right_conversations(
    api: Api, server: Server
) -> None:
    agent = add_user(api)
    channel = create_channel(api, name="Web")
    other_channel = create_channel(api, name="App móvil")
    mine = customer_writes(api, "Sigo sin coche", channel=channel, name="Ana Mía")
    waiting = customer_writes(api, "¿Hay novedades?", channel=other_channel, name="Bruno Espera")
    done = customer_writes(api, "Todo resuelto", channel=channel, name="Carla Cerrada")
    customer_writes(
        api, "Busco la factura 4471", channel=channel, name="Dani Factura", phone="+34 699 000 111"
    )
    api.patch(f"/api/v1/conversations/{mine.conversation_id}", json={"assignee_id": agent.id})
    api.post(f"/api/v1/conversations/{mine.conversation_id}/labels", json={"label": "vip"})
    api.patch(f"/api/v1/conversations/{waiting.conversation_id}", json={"status": "pending"})
    api.patch(f"/api/v1/conversations/{done.conversation_id}", json={"status": "resolved"})
    browser = sign_in(server, agent)
    assert inbox(browser) == ["Dani Factura", "Ana Mía"]  # open, newest activity first
    assert inbox(browser, view="mine") == ["Ana Mía"]
    assert inbox(browser, view="unassigned", status="pending") == ["Bruno Espera"]
    assert inbox(browser, status="resolved") == ["Carla Cerrada"]
    assert inbox(browser, status="any", channel=other_channel["id"]) == ["Bruno Espera"]
    assert inbox(browser, label="vip") == ["Ana Mía"]
    # Search looks through message text, names and identities, whatever the status.
    assert inbox(browser, q="factura 4471") == ["Dani Factura"]
    assert inbox(browser, q="699 000") == [] and inbox(browser, q="+34699000") == ["Dani Factura"]
    assert inbox(browser, q="carla") == ["Carla Cerrada"]
    page = browser.get("/app/inbox").text
    counts = dict(re.findall(r'id="view-(\w+)".*?<span class="count">(\d+)</span>', page, re.S))
    assert counts == {"mine": "1", "unassigned": "2", "all": "3"}
    assert re.search(r"Pending \(1\)", page) and re.search(r"Resolved \(1\)", page)


def test_timeline_shows_channel_switch_notes_mentions_and_why_a_reply_failed(
    api: Api, server: Server
) -> None:
    no_callback = create_channel(api, name="SMS sin pasarela")
    whatsapp = create_channel(api, name="WhatsApp")
    colleague = add_user(api, name="Sofía Navarro")
    agent = add_user(api)
    first = customer_writes(
        api, "Hola por SMS", channel=no_callback, sender="p-1", phone="+34611000222"
    )
    customer_writes(
        api, "Y ahora por WhatsApp", channel=whatsapp, sender="w-1", phone="611 000 222"
    )
    browser = sign_in(server, agent)
    base = f"/app/conversations/{first.conversation_id}"
    handle = colleague.email.split("@")[0]
    note = browser.post_form(f"{base}/messages", {"mode": "note", "text": f"@{handle} mira esto"})
    assert note.status_code == 200, note.text
    assert "refresh-timeline" in note.headers["HX-Trigger"]
    sent = browser.post_form(
        f"{base}/messages",
        {"mode": "reply", "text": "Le escribo por SMS", "channel_id": no_callback["id"]},
    )
    assert sent.status_code == 200, sent.text

    def failed() -> str | None:
        html = browser.get(f"{base}/timeline").text
        return html if "Not delivered" in html else None

    html = wait_for(failed, message="the reply marked as not delivered")
    assert "Not delivered: the channel has no callback_url" in html
    assert "The customer moved from SMS sin pasarela to WhatsApp." in html
    assert f'<mark class="mention">@{handle}</mark> mira esto' in html
    assert "Internal note" in html
    # The note and the failure order: the switch shows before the message that caused it.
    assert (
        html.index("Hola por SMS") < html.index("moved from") < html.index("Y ahora por WhatsApp")
    )


def test_reply_box_defaults_to_the_last_channel_and_offers_only_reachable_ones(
    api: Api, server: Server
) -> None:
    app = CompanyApp().start()
    try:
        web = create_channel(api, callback_url=app.url, name="Web")
        unused = create_channel(api, name="Telegram de pruebas")
        thread = customer_writes(api, "Hola", channel=web, name="Eva")
        browser = sign_in(server, add_user(api))
        reply = browser.get(f"/app/conversations/{thread.conversation_id}/reply").text
        web_option = re.search(rf'<option value="{web["id"]}"[^>]*>', reply)
        unused_option = re.search(rf'<option value="{unused["id"]}"[^>]*>', reply)
        assert web_option and "selected" in web_option.group(0)
        assert unused_option and "disabled" in unused_option.group(0)
        assert "The customer cannot be reached on this channel." in reply
        refused = browser.post_form(
            f"/app/conversations/{thread.conversation_id}/messages",
            {"mode": "reply", "text": "Hola", "channel_id": unused["id"]},
        )
        assert refused.status_code == 409
        assert refused.headers["HX-Retarget"] == "#toast"
        assert "cannot be reached" in refused.text
        assert app.received == []
    finally:
        app.stop()


def test_canned_responses_are_filled_in_for_the_customer_and_escaped(
    api: Api, server: Server
) -> None:
    supervisor = add_user(api, role="supervisor", name="Javier Morales")
    thread = customer_writes(api, "Hola", name="Lucía <b>Romero</b>")
    browser = sign_in(server, supervisor)
    saved = browser.post(
        "/app/admin/canned",
        data={
            "csrf_token": browser.csrf,
            "shortcut": "/saludo",
            "title": "Saludo",
            "body": "Hola {{contact.first_name}}, soy {{agent.first_name}}. {{unknown.var}}",
        },
    )
    assert saved.status_code == 200 and "Canned response saved." in saved.text
    duplicate = browser.post(
        "/app/admin/canned",
        data={"csrf_token": browser.csrf, "shortcut": "saludo", "title": "Otro", "body": "x"},
    )
    assert duplicate.status_code == 409
    found = browser.get(f"/app/conversations/{thread.conversation_id}/canned", params={"q": "/sal"})
    assert "Hola Lucía, soy Javier. {{unknown.var}}" in found.text
    listed = browser.get(f"/app/conversations/{thread.conversation_id}/canned", params={"q": "xyz"})
    assert "No canned responses match." in listed.text
    agent = sign_in(server, add_user(api))
    assert (
        agent.post(
            "/app/admin/canned",
            data={"csrf_token": agent.csrf, "shortcut": "x", "title": "x", "body": "x"},
        ).status_code
        == 403
    )


def test_context_panel_shows_the_whole_customer(api: Api, server: Server) -> None:
    shop, web = create_channel(api, name="Tienda"), create_channel(api, name="Web")
    thread = customer_writes(
        api,
        "Primera",
        channel=shop,
        sender="s",
        name="Marta Jiménez",
        phone="+34611223344",
        email="marta@example.com",
    )
    customer_writes(api, "Segunda", channel=web, sender="w", phone="+34611223344")
    company = api.post("/api/v1/companies", json={"name": "Rent a Car Sur"}).json()
    api.patch(
        f"/api/v1/contacts/{thread.contact['id']}",
        json={"company_id": company["id"], "locale": "es", "attributes": {"tier": "gold"}},
    )
    api.post(
        "/api/v1/deals",
        json={
            "title": "Flota 2027",
            "contact_id": thread.contact["id"],
            "amount": "1200.50",
            "stage": "proposal",
        },
    )
    api.patch(f"/api/v1/conversations/{thread.conversation_id}", json={"status": "resolved"})
    age_resolution(api, thread.conversation_id, days=30)  # past the reopen window
    later = customer_writes(api, "Otra cosa", channel=web, sender="w")
    browser = sign_in(server, add_user(api))
    panel = browser.get(f"/app/conversations/{later.conversation_id}/panel").text
    for expected in (
        "Marta Jiménez",
        "Rent a Car Sur",
        "Flota 2027",
        "proposal",
        "1,200.50 EUR",
        "tier",
        "gold",
        "Español",
        "+34611223344",
        "marta@example.com",
        "Tienda",
        "Web",
    ):
        assert expected in panel, expected
    past = panel.split("Past conversations")[1]
    assert thread.conversation_id in past and "Resolved" in past


def test_editing_the_contact_in_the_panel_saves_it(api: Api, server: Server) -> None:
    thread = customer_writes(api, "Hola", name="Jon")
    browser = sign_in(server, add_user(api))
    form = browser.get(f"/app/conversations/{thread.conversation_id}/contact/edit")
    assert 'name="attr_key"' in form.text
    saved = browser.post(
        f"/app/conversations/{thread.conversation_id}/contact",
        data={
            "csrf_token": browser.csrf,
            "name": "Jon Ander Etxeberria",
            "locale": "es",
            "timezone": "Europe/Madrid",
            "attr_key": ["vehículo", ""],
            "attr_value": ["Seat León", ""],
        },
    )
    assert saved.status_code == 200, saved.text
    assert "Jon Ander Etxeberria" in saved.text
    contact = api.get(f"/api/v1/contacts/{thread.contact['id']}").json()
    assert contact["name"] == "Jon Ander Etxeberria"
    assert contact["attributes"] == {"vehículo": "Seat León"}
    bad = browser.post(
        f"/app/conversations/{thread.conversation_id}/contact",
        data={"csrf_token": browser.csrf, "name": "Jon", "timezone": "Mars/Base"},
    )
    assert bad.status_code == 422 and "Unknown time zone." in bad.text
    assert api.get(f"/api/v1/contacts/{thread.contact['id']}").json()["name"] == (
        "Jon Ander Etxeberria"
    )


def test_admin_channels_page_gives_webhook_address_secret_and_help(
    api: Api, server: Server
) -> None:
    channel = create_channel(api, name="Nuestra app")
    admin = sign_in(server, add_user(api, role="admin", name="Carmen Ruiz"))
    page = admin.get("/app/admin/channels").text
    assert channel["webhook_url"] in page
    assert channel["secret"] not in page
    assert "X-Hilo-Signature" in page  # the set-up help of the API channel
    revealed = admin.post(
        f"/app/admin/channels/{channel['id']}/secrets", data={"csrf_token": admin.csrf}
    )
    assert channel["secret"] in revealed.text
    created = admin.post(
        "/app/admin/channels",
        data={
            "csrf_token": admin.csrf,
            "type": "api",
            "name": "Otra app",
            "config_key": ["callback_url"],
            "config_value": ["https://app.example/hilo"],
        },
    )
    assert created.status_code == 200 and "Otra app" in created.text
    assert "https://app.example/hilo" in created.text
    names = [c["name"] for c in api.get("/api/v1/channels").json()["items"]]
    assert "Otra app" in names
    agent = sign_in(server, add_user(api))
    assert agent.get("/app/admin/channels").status_code == 403


def test_admin_adds_users_and_teams_from_the_people_page(api: Api, server: Server) -> None:
    admin = sign_in(server, add_user(api, role="admin", name="Carmen Ruiz"))
    added = admin.post(
        "/app/admin/users",
        data={
            "csrf_token": admin.csrf,
            "name": "Diego Castillo",
            "email": "diego@example.com",
            "role": "agent",
            "password": "una clave larga",
        },
    )
    assert added.status_code == 200 and "diego@example.com" in added.text
    weak = admin.post(
        "/app/admin/users",
        data={"csrf_token": admin.csrf, "email": "x@example.com", "role": "agent", "password": "x"},
    )
    assert weak.status_code == 422
    team = admin.post("/app/admin/teams", data={"csrf_token": admin.csrf, "name": "Reservas"})
    assert "Reservas" in team.text
    team_id = next(
        t["id"] for t in api.get("/api/v1/teams").json()["items"] if t["name"] == "Reservas"
    )
    diego = next(
        u["id"]
        for u in api.get("/api/v1/users").json()["items"]
        if u["email"] == "diego@example.com"
    )
    member = admin.post(
        f"/app/admin/teams/{team_id}/members", data={"csrf_token": admin.csrf, "user_id": diego}
    )
    assert member.status_code == 200
    section = member.text.split("<h3>Reservas</h3>")[1].split("</div>")[0]
    assert "Diego Castillo" in section


def test_customer_text_is_escaped_in_every_fragment(api: Api, server: Server) -> None:
    payload = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    thread = customer_writes(api, payload, name=payload, email="eve@example.com")
    browser = sign_in(server, add_user(api))
    base = f"/app/conversations/{thread.conversation_id}"
    for url in (
        "/app/inbox",
        "/app/inbox/list",
        base,
        f"{base}/timeline",
        f"{base}/panel",
        f"{base}/header",
        f"{base}/contact/edit",
        f"{base}/trail",
    ):
        html = browser.get(url, params={"status": "any"}).text
        assert "<script>alert" not in html and "<img src=x" not in html, url
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in browser.get(f"{base}/timeline").text


def test_workspace_speaks_the_browsers_language_until_the_user_picks_one(
    api: Api, server: Server
) -> None:
    agent = add_user(api)
    spanish = sign_in(server, agent, headers={"Accept-Language": "es-MX,es;q=0.9"})
    page = spanish.get("/app/inbox").text
    assert '<html lang="es">' in page and "Bandeja de entrada" in page
    english = sign_in(server, agent, headers={"Accept-Language": "en-US"})
    assert "Inbox" in english.get("/app/inbox").text
    english.post(
        "/app/settings/language", data={"csrf_token": english.csrf, "locale": "es", "next": "/app"}
    )
    assert "Bandeja de entrada" in english.get("/app/inbox").text
    # The choice is the user's, wherever they sign in next.
    other = sign_in(server, agent, headers={"Accept-Language": "en-GB"})
    assert '<html lang="es">' in other.get("/app/inbox").text


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    """A local server that answers like Meta's Graph API."""
    fake = FakeGraph().start()
    yield fake
    fake.stop()


def test_whatsapp_window_closed_offers_the_templates_and_sends_one(
    api: Api, server: Server, graph: FakeGraph
) -> None:
    wa = create_whatsapp(api, api_base_url=graph.base_url, templates=TEMPLATES)
    _contact, item = whatsapp_customer_writes(wa, new_wa_id(), seconds_ago=26 * 3600)
    browser = sign_in(server, add_user(api))
    base = f"/app/conversations/{item['conversation_id']}"
    reply = browser.get(f"{base}/reply").text
    assert "in the last 24 hours: only a template can be sent." in reply
    assert 'value="recordatorio_cita|es"' in reply
    assert "Hola {{1}}, te recordamos tu cita del {{2}}." in reply
    plain = browser.post_form(f"{base}/messages", {"mode": "reply", "text": "¿Sigues ahí?"})
    assert plain.status_code == 409 and "only a template can be sent" in plain.text
    sent = browser.post_form(
        f"{base}/messages",
        {
            "mode": "reply",
            "text": "",
            "channel_id": wa.id,
            "template": "recordatorio_cita|es",
            "param": ["Lucía", "martes 10:00"],
        },
    )
    assert sent.status_code == 200, sent.text
    wait_for(lambda: graph.sends, message="the template reaches the Graph API")
    assert graph.sends[0].json()["template"]["name"] == "recordatorio_cita"
    timeline = browser.get(f"{base}/timeline").text
    assert "Hola Lucía, te recordamos tu cita del martes 10:00." in timeline


def test_a_call_the_agent_logged_shows_in_the_timeline_with_its_notes(
    api: Api, server: Server
) -> None:
    channel = create_channel(api, name="App")
    agent = add_user(api)
    first = customer_writes(api, "Llámenme, por favor", channel=channel, sender="c-1")
    logged = api.post(
        f"/api/v1/conversations/{first.conversation_id}/calls",
        json={"duration_seconds": 185, "notes": "Grúa en camino, llega en 40 min"},
    )
    assert logged.status_code in (200, 201, 202), logged.text
    browser = sign_in(server, agent)
    page = browser.get(f"/app/conversations/{first.conversation_id}/timeline")
    assert page.status_code == 200, page.text
    assert "Grúa en camino, llega en 40 min" in page.text
    assert "call-card" in page.text


def test_a_long_conversation_opens_at_its_latest_messages_and_shows_earlier_ones_on_demand(
    api: Api, server: Server
) -> None:
    """Hundreds of messages are not all rendered on every open and every live refresh: the
    timeline opens with the latest 100 and offers the earlier ones, in order."""
    channel = create_channel(api)
    thread = customer_writes(api, "Mensaje 000", channel=channel, sender="long-1")
    last = ""
    for n in range(1, 120):
        sent = post_api_message(
            api, channel["id"], channel["secret"], message("long-1", f"Mensaje {n:03d}")
        )
        assert sent.status_code == 200, sent.text
        last = sent.json()["message_id"]
    newest = f"/api/v1/contacts/{thread.contact['id']}/timeline?newest_first=true&limit=1"
    wait_for(
        lambda: api.get(newest).json()["items"][0]["id"] == last,
        message="the 120th message processed",
    )
    browser = sign_in(server, add_user(api))
    base = f"/app/conversations/{thread.conversation_id}"

    page = browser.get(base)
    assert page.status_code == 200, page.text
    timeline = page.text[page.text.index('<section id="timeline"') :]
    shown = re.findall(r"Mensaje (\d{3})", timeline[: timeline.index("</section>")])
    assert shown == [f"{n:03d}" for n in range(20, 120)]
    assert "Show earlier messages" in page.text
    assert "Conversation started on" not in timeline  # it belongs to the earlier part
    assert f'{base}/timeline?show=200"' in page.text
    # A live refresh keeps the window the agent opened.
    assert f'data-refresh="{base}/timeline?show=100"' in page.text

    earlier = browser.get(f"{base}/timeline", params={"show": "200"})
    assert earlier.status_code == 200, earlier.text
    shown = re.findall(r"Mensaje (\d{3})", earlier.text)
    assert shown == [f"{n:03d}" for n in range(120)]
    assert "Show earlier messages" not in earlier.text
    assert "Conversation started on" in earlier.text
    assert earlier.text.index("Conversation started on") < earlier.text.index("Mensaje 000")
    assert f'data-refresh="{base}/timeline?show=200"' in earlier.text
    assert browser.get(f"{base}/timeline", params={"show": "0"}).status_code // 100 == 4
