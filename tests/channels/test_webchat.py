"""The web chat widget end to end, with a real WebSocket client, on SQLite and PostgreSQL.

A visitor is driven as the widget drives it: ``POST /webchat/{id}/session`` for a token,
then the socket (``hello`` first) or, as the fallback, long-polling plus POST. The agent
answers through the ordinary conversations API.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from hilo.channels.webchat import identity_hash
from tests.conftest import Api, free_port, wait_for
from tests.core.test_api_channel import create_channel, message, message_visible, timeline
from tests.helpers import post_api_message
from tests.realtime.test_stream import new_ticket, recv_until, second_server, ws_connect

VECTOR = json.loads(
    (
        Path(__file__).parent.parent / "fixtures" / "webchat" / "widget_identity_hmac.json"
    ).read_text()
)
SITE = "https://shop.example"
TIMEOUT = 15.0


def create(api: Api, type: str, name: str, config: dict[str, Any]) -> dict[str, Any]:
    """A channel of ``type``, as the channel's creation answers it (with its secret)."""
    response = api.post("/api/v1/channels", json={"type": type, "name": name, "config": config})
    assert response.status_code == 201, response.text
    channel: dict[str, Any] = response.json()
    return channel


def create_webchat(api: Api, **config: Any) -> dict[str, Any]:
    return create(api, "webchat", "Web", config)


@dataclass
class Visitor:
    """One browser on the company's site, talking to a web chat channel."""

    api: Api
    channel: dict[str, Any]
    origin: str | None = SITE
    token: str | None = None
    visitor_id: str | None = None
    sockets: list[ClientConnection] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"{self.api.base_url}/webchat/{self.channel['id']}"

    def headers(self) -> dict[str, str]:
        headers = {"Accept-Language": "es"}
        if self.origin:
            headers["Origin"] = self.origin
        if self.token:
            headers["X-Hilo-Visitor"] = self.token
        return headers

    def start(self, **identity: Any) -> httpx.Response:
        """A page load: the stored token goes along, the answer's token is kept."""
        body = {"token": self.token, **identity}
        response = httpx.post(f"{self.base}/session", json=body, headers=self.headers(), timeout=15)
        if response.status_code == 200:
            self.token = response.json()["token"]
            self.visitor_id = response.json()["visitor_id"]
        return response

    def open(self) -> tuple[ClientConnection, dict[str, Any]]:
        """The widget's socket, after its hello; returns it with the ``ready`` frame."""
        url = self.base.replace("http://", "ws://", 1) + "/ws"
        extra = {"Origin": self.origin} if self.origin else {}
        ws = connect(url, open_timeout=TIMEOUT, close_timeout=2, additional_headers=extra)
        self.sockets.append(ws)
        ws.send(json.dumps({"type": "hello", "token": self.token, "locale": "es"}))
        ready = json.loads(ws.recv(timeout=TIMEOUT))
        assert ready["type"] == "ready", ready
        return ws, ready

    def post(self, text: str, client_id: str | None = None) -> httpx.Response:
        body = {"client_message_id": client_id or uuid.uuid4().hex, "text": text}
        return httpx.post(f"{self.base}/messages", json=body, headers=self.headers(), timeout=15)

    def history(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base}/messages", headers=self.headers(), timeout=15)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def poll(self, state: str | None, wait: float = 20) -> dict[str, Any]:
        params: dict[str, Any] = {"wait": wait}
        if state:
            params["state"] = state
        response = httpx.get(
            f"{self.base}/poll", params=params, headers=self.headers(), timeout=wait + 10
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def close(self) -> None:
        for ws in self.sockets:
            ws.close()


@pytest.fixture
def visitors() -> Iterator[Callable[..., Visitor]]:
    made: list[Visitor] = []

    def make(api: Api, channel: dict[str, Any], **kwargs: Any) -> Visitor:
        visitor = Visitor(api, channel, **kwargs)
        made.append(visitor)
        return visitor

    yield make
    for visitor in made:
        visitor.close()


def frame_until(ws: ClientConnection, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Frames until one matches; fails after the stream tests' timeout."""
    return recv_until(ws, match, [])


def say(ws: ClientConnection, text: str, client_id: str | None = None) -> dict[str, Any]:
    """Send a message on the socket; returns its ack."""
    client_id = client_id or uuid.uuid4().hex
    ws.send(json.dumps({"type": "message", "client_message_id": client_id, "text": text}))
    return frame_until(
        ws, lambda f: f.get("client_message_id") == client_id and f["type"] != "message"
    )


def shown(text: str, sender: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: (
        f["type"] == "message" and f["message"]["text"] == text and f["message"]["sender"] == sender
    )


def close_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            ws.recv(timeout=TIMEOUT)
    return info.value.rcvd.code if info.value.rcvd else None


def contact_with(api: Api, message_id: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: message_visible(api, message_id), message=f"message {message_id} processed"
    )
    return found


def conversation_of(api: Api, contact_id: str) -> str:
    return str(timeline(api, contact_id)[0]["conversation_id"])


def reply(api: Api, conversation_id: str, text: str) -> dict[str, Any]:
    response = api.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": text})
    assert response.status_code == 202, response.text
    data: dict[str, Any] = response.json()
    return data


def message_in(api: Api, conversation_id: str, message_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/conversations/{conversation_id}/messages")
    assert response.status_code == 200, response.text
    return next(m for m in response.json()["items"] if m["id"] == message_id)


def wait_message(
    api: Api, conversation_id: str, message_id: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: m if check(m := message_in(api, conversation_id, message_id)) else None,
        timeout=20,
        message=f"message {message_id}",
    )
    return found


# -- the script ----------------------------------------------------------------------------


def test_widget_script_carries_the_channel_and_both_languages(api: Api) -> None:
    channel = create_webchat(api, title="Rent a Car Sur", color="#0a7d3b")
    response = httpx.get(f"{api.base_url}/widget/{channel['id']}.js", timeout=15)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    script = response.text
    assert channel["id"] in script and "/*@HILO_BOOT@*/" not in script
    boot = json.loads(script.split("var BOOT = ", 1)[1].split(";\n", 1)[0])
    assert boot["config"] == {"title": "Rent a Car Sur", "color": "#0a7d3b", "locale": "auto"}
    assert boot["strings"]["es"]["send"] == "Enviar"
    assert boot["strings"]["en"]["send"] == "Send"
    # Customer and agent text never goes through the HTML parser.
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    unknown = httpx.get(f"{api.base_url}/widget/{uuid.uuid4()}.js", timeout=15)
    assert unknown.status_code == 404
    api_channel = create_channel(api)
    assert httpx.get(f"{api.base_url}/widget/{api_channel['id']}.js").status_code == 404


def test_channel_response_gives_the_identity_secret_once(api: Api) -> None:
    channel = create_webchat(api, allowed_origins=["https://Shop.Example/"])
    assert len(channel["secret"]) >= 32
    assert channel["config"]["allowed_origins"] == [SITE]
    assert "secret" not in api.get(f"/api/v1/channels/{channel['id']}").json()["config"]
    bad = api.post(
        "/api/v1/channels",
        json={"type": "webchat", "name": "Web", "config": {"allowed_origins": ["not a site"]}},
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_config"


# -- one visitor, one conversation -------------------------------------------------------------


def test_two_page_loads_with_the_same_token_keep_one_conversation(
    api: Api, visitors: Callable[..., Visitor]
) -> None:
    channel = create_webchat(api)
    visitor = visitors(api, channel)
    assert visitor.start().status_code == 200
    first_page, ready = visitor.open()
    assert ready["messages"] == []
    ack = say(first_page, "Hola, ¿abrís el domingo?")
    assert ack["type"] == "ack" and ack["duplicate"] is False
    frame_until(first_page, shown("Hola, ¿abrís el domingo?", "visitor"))
    first_page.close()

    # The next page load: same token from localStorage, a new socket.
    token = visitor.token
    assert visitor.start().json()["token"] == token
    second_page, ready = visitor.open()
    assert [m["text"] for m in ready["messages"]] == ["Hola, ¿abrís el domingo?"]
    ack2 = say(second_page, "¿Y el lunes?")
    frame_until(second_page, shown("¿Y el lunes?", "visitor"))

    contact = contact_with(api, ack2["message_id"])
    items = timeline(api, contact["id"])
    assert [i["text"] for i in items] == ["Hola, ¿abrís el domingo?", "¿Y el lunes?"]
    assert len({i["conversation_id"] for i in items}) == 1
    assert all(i["channel_id"] == channel["id"] for i in items)
    assert len(api.get("/api/v1/contacts").json()["items"]) == 1
    # The visitor id is the channel's own, unverified identity.
    assert contact["identities"] == [
        {
            "kind": "webchat",
            "value": f"v:{visitor.visitor_id}",
            "verified": False,
            "channel_id": channel["id"],
        }
    ]


def test_two_tabs_see_each_others_messages(api: Api, visitors: Callable[..., Visitor]) -> None:
    channel = create_webchat(api)
    visitor = visitors(api, channel)
    visitor.start()
    tab_one, _ready = visitor.open()
    say(tab_one, "primero")
    frame_until(tab_one, shown("primero", "visitor"))
    tab_two, _ready = visitor.open()
    ack = say(tab_two, "desde la otra pestaña")
    echoed = frame_until(tab_one, shown("desde la otra pestaña", "visitor"))
    assert echoed["message"]["id"] == ack["message_id"]
    assert echoed["message"]["client_message_id"] == ack["client_message_id"]


def test_agent_reply_arrives_live_on_the_visitor_socket(
    api: Api, visitors: Callable[..., Visitor]
) -> None:
    channel = create_webchat(api, email_fallback=False)
    visitor = visitors(api, channel)
    visitor.start()
    ws, _ready = visitor.open()
    ack = say(ws, "Mi coche no arranca")
    contact = contact_with(api, ack["message_id"])
    conversation_id = conversation_of(api, contact["id"])
    sent = reply(api, conversation_id, "Te mandamos la grúa <b>ya</b>")
    live = frame_until(ws, shown("Te mandamos la grúa <b>ya</b>", "agent"))
    assert live["message"]["id"] == sent["id"]
    assert live["message"]["status"] == "sent"
    # The widget says it showed it with the chat open: the reply is read.
    ws.send(json.dumps({"type": "seen", "message_ids": [sent["id"]], "status": "read"}))
    wait_message(api, conversation_id, sent["id"], lambda m: m["status"] == "read")
    # A later page load finds it in the history too.
    assert [m["text"] for m in visitor.history()["messages"]] == [
        "Mi coche no arranca",
        "Te mandamos la grúa <b>ya</b>",
    ]


def test_notes_and_unsent_replies_are_never_shown_to_the_visitor(
    api: Api, visitors: Callable[..., Visitor]
) -> None:
    channel = create_webchat(api, email_fallback=False)
    visitor = visitors(api, channel)
    visitor.start()
    ack = visitor.post("¿Me llamáis?").json()
    contact = contact_with(api, ack["message_id"])
    conversation_id = conversation_of(api, contact["id"])
    note = api.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"text": "cliente moroso, ojo", "private": True},
    )
    assert note.status_code == 202
    sent = reply(api, conversation_id, "Ahora mismo")
    wait_message(api, conversation_id, sent["id"], lambda m: m["status"] == "sent")
    texts = [m["text"] for m in visitor.history()["messages"]]
    assert texts == ["¿Me llamáis?", "Ahora mismo"]


def test_long_polling_carries_messages_both_ways(
    api: Api, visitors: Callable[..., Visitor]
) -> None:
    """The fallback when WebSockets are blocked: POST to send, long-poll to receive."""
    channel = create_webchat(api, email_fallback=False)
    visitor = visitors(api, channel)
    visitor.start()
    first = visitor.poll(None, wait=1)
    assert first["messages"] == [] and first["changed"] is True
    # Nothing new: the poll waits, then says so.
    idle = visitor.poll(first["state"], wait=1)
    assert idle["changed"] is False and idle["state"] == first["state"]
    sent = visitor.post("¿Tenéis sillas de bebé?")
    assert sent.status_code == 200, sent.text
    mine = visitor.poll(first["state"])
    assert [m["text"] for m in mine["messages"]] == ["¿Tenéis sillas de bebé?"]
    assert mine["messages"][0]["id"] == sent.json()["message_id"]
    contact = contact_with(api, sent.json()["message_id"])
    conversation_id = conversation_of(api, contact["id"])
    answer = reply(api, conversation_id, "Sí, de todas las edades")
    # The reply ends a poll that was already waiting.
    got = visitor.poll(mine["state"])
    assert got["changed"] is True
    assert got["messages"][-1]["text"] == "Sí, de todas las edades"
    assert got["messages"][-1]["sender"] == "agent"
    seen = httpx.post(
        f"{visitor.base}/seen",
        json={"message_ids": [answer["id"]], "status": "read"},
        headers=visitor.headers(),
    )
    assert seen.status_code == 200 and seen.json() == {"acknowledged": 1}
    wait_message(api, conversation_id, answer["id"], lambda m: m["status"] == "read")


def test_retried_client_message_id_is_one_message(
    api: Api, visitors: Callable[..., Visitor]
) -> None:
    channel = create_webchat(api)
    visitor = visitors(api, channel)
    visitor.start()
    ws, _ready = visitor.open()
    first = say(ws, "¿Hacéis envíos a Canarias?", client_id="c-1")
    # The widget lost the ack and retries: over the socket, then over HTTP.
    again = say(ws, "¿Hacéis envíos a Canarias?", client_id="c-1")
    over_http = visitor.post("¿Hacéis envíos a Canarias?", client_id="c-1").json()
    assert first["duplicate"] is False
    assert again["duplicate"] is True and over_http["duplicate"] is True
    assert first["message_id"] == again["message_id"] == over_http["message_id"]
    contact = contact_with(api, first["message_id"])
    time.sleep(0.3)
    assert [i["text"] for i in timeline(api, contact["id"])] == ["¿Hacéis envíos a Canarias?"]


# -- identity ----------------------------------------------------------------------------------


def test_identity_vector_matches_the_documented_hmac() -> None:
    assert identity_hash(VECTOR["hmac_token"], VECTOR["identifier"]) == VECTOR["identifier_hash"]


def test_valid_identity_hash_joins_the_customers_own_contact_from_any_device(
    api: Api, visitors: Callable[..., Visitor]
) -> None:
    channel = create_webchat(api, secret=VECTOR["hmac_token"])
    signed = {"user_id": VECTOR["identifier"], "user_hash": VECTOR["identifier_hash"]}
    laptop = visitors(api, channel)
    assert laptop.start(**signed, name="Jane").json()["identified"] is True
    first = laptop.post("Desde el portátil").json()
    contact = contact_with(api, first["message_id"])
    assert {
        "kind": "webchat",
        "value": "u:user-42",
        "verified": True,
        "channel_id": channel["id"],
    } in (contact["identities"])
    phone = visitors(api, channel)
    phone.start(**signed)
    assert phone.token != laptop.token
    ws, ready = phone.open()
    # The customer's own conversation, on the new device too.
    assert [m["text"] for m in ready["messages"]] == ["Desde el portátil"]
    second = say(ws, "Y desde el móvil")
    assert contact_with(api, second["message_id"])["id"] == contact["id"]
    assert len(api.get("/api/v1/contacts").json()["items"]) == 1


def test_invalid_identity_hash_is_refused(api: Api, visitors: Callable[..., Visitor]) -> None:
    channel = create_webchat(api, secret=VECTOR["hmac_token"])
    visitor = visitors(api, channel)
    forged = visitor.start(user_id="user-43", user_hash=VECTOR["identifier_hash"])
    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "invalid_user_hash"
    assert "secreto del canal" in forged.json()["error"]["message"]
    unsigned = visitor.start(user_id="user-42")
    assert unsigned.status_code == 401
    assert visitor.token is None


def test_identity_required_channel_refuses_anonymous_visitors(
    api: Api, visitors: Callable[..., Visitor]
) -> None:
    channel = create_webchat(api, identity="required", secret=VECTOR["hmac_token"])
    visitor = visitors(api, channel)
    refused = visitor.start()
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "identity_required"
    signed = {"user_id": VECTOR["identifier"], "user_hash": VECTOR["identifier_hash"]}
    assert visitor.start(**signed).status_code == 200


def test_signed_out_customer_gets_a_fresh_anonymous_chat(
    api: Api, visitors: Callable[..., Visitor]
) -> None:
    """A shared computer: after sign-out the stored token must not show the customer's chat."""
    channel = create_webchat(api, secret=VECTOR["hmac_token"])
    visitor = visitors(api, channel)
    visitor.start(user_id=VECTOR["identifier"], user_hash=VECTOR["identifier_hash"])
    sent = visitor.post("Mi número de reserva es 4411").json()
    contact_with(api, sent["message_id"])
    customer_token = visitor.token
    anonymous = visitor.start()
    assert anonymous.json()["identified"] is False
    assert visitor.token != customer_token
    assert visitor.history()["messages"] == []


def test_signed_email_joins_the_contact_that_has_it_verified(
    api: Api, visitors: Callable[..., Visitor]
) -> None:
    app = create_channel(api)
    known = post_api_message(
        api, app["id"], app["secret"], message("crm-7", "Pedido hecho", email="pepa@example.com")
    )
    customer = contact_with(api, known.json()["message_id"])
    channel = create_webchat(api, secret=VECTOR["hmac_token"])
    visitor = visitors(api, channel)
    started = visitor.start(
        email="pepa@example.com",
        email_hash=identity_hash(VECTOR["hmac_token"], "pepa@example.com"),
    )
    assert started.json()["email_verified"] is True
    sent = visitor.post("¿Dónde está mi pedido?").json()
    assert contact_with(api, sent["message_id"])["id"] == customer["id"]
    wrong = visitors(api, channel).start(email="pepa@example.com", email_hash="0" * 64)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_email_hash"


def test_typed_email_is_a_merge_suggestion_not_a_join(
    api: Api, visitors: Callable[..., Visitor]
) -> None:
    app = create_channel(api)
    known = post_api_message(
        api, app["id"], app["secret"], message("crm-9", "Factura", email="luis@example.com")
    )
    customer = contact_with(api, known.json()["message_id"])
    channel = create_webchat(api)
    visitor = visitors(api, channel)
    visitor.start()
    sent = visitor.post("Soy Luis, el de la factura").json()
    stranger = contact_with(api, sent["message_id"])
    left = httpx.post(
        f"{visitor.base}/email", json={"email": "Luis@Example.com"}, headers=visitor.headers()
    )
    assert left.status_code == 200, left.text
    assert left.json() == {"email": "luis@example.com", "email_verified": False}
    with ws_connect(api.base_url, new_ticket(api), last_event_id=0) as stream:
        suggested = recv_until(stream, lambda e: e["type"] == "contact.merge_suggested", [])
    assert suggested["contact_id"] == stranger["id"]
    assert suggested["data"] == {"candidate_id": customer["id"], "reason": "same email"}
    # Two contacts still: the visitor sees none of the customer's history.
    assert stranger["id"] != customer["id"]
    assert [m["text"] for m in visitor.history()["messages"]] == ["Soy Luis, el de la factura"]
    assert "luis@example.com" not in str(api.get(f"/api/v1/contacts/{stranger['id']}").json())
    bad = httpx.post(f"{visitor.base}/email", json={"email": "luis"}, headers=visitor.headers())
    assert bad.status_code == 422


# -- e-mail when the visitor has left ----------------------------------------------------------


@dataclass
class Mailbox:
    """A local SMTP server standing in for the company's outbound relay."""

    received: list[Any] = field(default_factory=list)
    controller: Any = None

    def start(self) -> Mailbox:
        from aiosmtpd.controller import Controller

        box = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                box.received.append(envelope)
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=free_port())
        self.controller.start()
        return self

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox().start()
    yield box
    box.stop()


def create_email_channel(api: Api, port: int) -> dict[str, Any]:
    config = {
        "address": f"soporte-{uuid.uuid4().hex[:6]}@shop.example",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_starttls": False,
    }
    return create(api, "email", "Mail", config)


def test_unseen_reply_is_emailed_to_the_address_the_visitor_left(
    api: Api, visitors: Callable[..., Visitor], mailbox: Mailbox
) -> None:
    create_email_channel(api, mailbox.port)
    channel = create_webchat(api, email_fallback_after_seconds=0)
    visitor = visitors(api, channel)
    visitor.start()
    sent = visitor.post("¿Me podéis pasar presupuesto?").json()
    contact = contact_with(api, sent["message_id"])
    left = httpx.post(
        f"{visitor.base}/email", json={"email": "ana@example.org"}, headers=visitor.headers()
    )
    assert left.status_code == 200
    wait_for(
        lambda: any(
            i["kind"] == "email"
            for i in api.get(f"/api/v1/contacts/{contact['id']}").json()["identities"]
        ),
        message="the e-mail joins the visitor's contact",
    )
    conversation_id = conversation_of(api, contact["id"])
    answer = reply(api, conversation_id, "Son 120 € por semana")
    # Nobody saw it in the widget: it goes out by e-mail, in the same conversation.
    original = wait_message(
        api, conversation_id, answer["id"], lambda m: "email_fallback" in m["data"]
    )
    assert original["data"]["email_fallback"]["status"] == "queued"
    copy_id = original["data"]["email_fallback"]["message_id"]
    wait_message(api, conversation_id, copy_id, lambda m: m["status"] == "sent")
    # Besides the link that proves the address, the reply itself.
    envelope = wait_for(
        lambda: next((e for e in mailbox.received if "120" in mail_text(e)), None),
        message="the reply reaches the relay",
    )
    assert envelope.rcpt_tos == ["ana@example.org"]
    assert "Son 120 € por semana" in mail_text(envelope)


def test_reply_seen_in_the_widget_is_not_emailed(
    api: Api, visitors: Callable[..., Visitor], mailbox: Mailbox
) -> None:
    create_email_channel(api, mailbox.port)
    channel = create_webchat(api, email_fallback_after_seconds=10)
    visitor = visitors(api, channel)
    visitor.start(email="eva@example.org")
    ws, _ready = visitor.open()
    ack = say(ws, "¿Tenéis automáticos?")
    contact = contact_with(api, ack["message_id"])
    conversation_id = conversation_of(api, contact["id"])
    answer = reply(api, conversation_id, "Sí, tres")
    frame_until(ws, shown("Sí, tres", "agent"))
    ws.send(json.dumps({"type": "seen", "message_ids": [answer["id"]], "status": "read"}))
    done = wait_message(api, conversation_id, answer["id"], lambda m: "email_fallback" in m["data"])
    assert done["data"]["email_fallback"] == {"status": "not_needed"}
    assert done["status"] == "read"
    assert mailbox.received == []


def test_without_an_email_channel_the_fallback_is_recorded_pending(
    api: Api, visitors: Callable[..., Visitor]
) -> None:
    channel = create_webchat(api, email_fallback_after_seconds=0)
    visitor = visitors(api, channel)
    visitor.start(email="leo@example.org")
    sent = visitor.post("¿Cerráis en agosto?").json()
    contact = contact_with(api, sent["message_id"])
    conversation_id = conversation_of(api, contact["id"])
    answer = reply(api, conversation_id, "No, abrimos todo el año")
    done = wait_message(api, conversation_id, answer["id"], lambda m: "email_fallback" in m["data"])
    assert done["data"]["email_fallback"] == {"status": "pending_email_channel"}
    trail = api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
    assert [e["data"] for e in trail if e["type"] == "message.email_fallback"] == [
        {"status": "pending_email_channel"}
    ]


def mail_text(envelope: Any) -> str:
    """The plain-text body of a relayed e-mail, decoded."""
    mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(mail, EmailMessage)
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def test_proof_link_joins_the_customer_the_typed_email_belongs_to(
    api: Api, visitors: Callable[..., Visitor], mailbox: Mailbox
) -> None:
    create_email_channel(api, mailbox.port)
    app = create_channel(api)
    known = post_api_message(
        api, app["id"], app["secret"], message("crm-3", "Reserva 991", email="noa@example.com")
    )
    customer = contact_with(api, known.json()["message_id"])
    channel = create_webchat(api, email_fallback=False)
    visitor = visitors(api, channel)
    visitor.start(locale="es")
    sent = visitor.post("Soy Noa, la de la reserva 991").json()
    stranger = contact_with(api, sent["message_id"])
    left = httpx.post(
        f"{visitor.base}/email", json={"email": "noa@example.com"}, headers=visitor.headers()
    )
    assert left.status_code == 200
    # Typed only: a suggestion, and a link to that address to prove it.
    assert len(api.get("/api/v1/contacts").json()["items"]) == 2
    wait_for(lambda: mailbox.received, message="the proof e-mail reaches the relay")
    assert mailbox.received[0].rcpt_tos == ["noa@example.com"]
    text = mail_text(mailbox.received[0])
    assert "noa@example.com" in text and "24 horas" in text
    link = re.search(r"https?://\S+/confirm/\S+", text)
    assert link is not None
    forged = httpx.get(link.group(0)[:-6] + "000000", headers={"Accept-Language": "es"})
    assert forged.status_code == 422
    assert "no es válido" in forged.text
    assert len(api.get("/api/v1/contacts").json()["items"]) == 2
    opened = httpx.get(link.group(0), headers={"Accept-Language": "es"})
    assert opened.status_code == 200
    assert "Correo confirmado" in opened.text
    # Proven: the visitor's chat joins the customer who has that address verified.
    assert [c["id"] for c in api.get("/api/v1/contacts").json()["items"]] == [customer["id"]]
    assert api.get(f"/api/v1/contacts/{stranger['id']}").json()["id"] == customer["id"]
    texts = [i["text"] for i in timeline(api, customer["id"])]
    assert texts == ["Reserva 991", "Soy Noa, la de la reserva 991"]
    assert [m["text"] for m in visitor.history()["messages"]] == ["Soy Noa, la de la reserva 991"]
    assert visitor.start().json()["email_verified"] is True


def test_proof_link_verifies_an_address_nobody_else_has(
    api: Api, visitors: Callable[..., Visitor], mailbox: Mailbox
) -> None:
    create_email_channel(api, mailbox.port)
    channel = create_webchat(api, email_fallback=False)
    visitor = visitors(api, channel)
    visitor.start(locale="en")
    sent = visitor.post("Hi there").json()
    contact = contact_with(api, sent["message_id"])
    httpx.post(
        f"{visitor.base}/email", json={"email": "zoe@example.org"}, headers=visitor.headers()
    )
    wait_for(lambda: mailbox.received, message="the proof e-mail reaches the relay")
    link = re.search(r"https?://\S+/confirm/\S+", mail_text(mailbox.received[0]))
    assert link is not None
    assert httpx.get(link.group(0), headers={"Accept-Language": "en"}).status_code == 200
    emails = [
        i
        for i in api.get(f"/api/v1/contacts/{contact['id']}").json()["identities"]
        if i["kind"] == "email"
    ]
    assert emails == [
        {"kind": "email", "value": "zoe@example.org", "verified": True, "channel_id": None}
    ]


def test_proof_link_with_a_forged_far_future_expiry_is_refused_as_invalid(
    api: Api, visitors: Callable[..., Visitor]
) -> None:
    channel = create_webchat(api, email_fallback=False)
    visitor = visitors(api, channel)
    visitor.start(email="yo@example.org")
    assert visitor.visitor_id is not None
    forged = f"{uuid.UUID(visitor.visitor_id).hex}.99999999999999.{'0' * 64}"
    response = httpx.get(f"{visitor.base}/confirm/{forged}", headers={"Accept-Language": "en"})
    assert response.status_code == 422
    assert "This link is not valid or has expired." in response.text


def test_typed_email_with_line_breaks_is_refused(
    api: Api, visitors: Callable[..., Visitor]
) -> None:
    channel = create_webchat(api)
    visitor = visitors(api, channel)
    visitor.start()
    for typed in ("yo@example.org\r\nbcc:otro@example.net", "yo@example.org,otro@example.net"):
        response = httpx.post(
            f"{visitor.base}/email", json={"email": typed}, headers=visitor.headers()
        )
        assert response.status_code == 422, typed
        assert response.json()["error"]["code"] == "invalid_email"
    assert visitor.start(email="yo@example.org\nX: 1").status_code == 422


def test_nul_characters_from_a_visitor_are_refused_with_422_not_a_500(
    api: Api, visitors: Callable[..., Visitor]
) -> None:
    # PostgreSQL refuses NUL in text and JSONB; a visitor must not be able to cause a 500.
    channel = create_webchat(api)
    visitor = visitors(api, channel)
    refused = visitor.start(name="Ana\x00")
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_payload"
    assert visitor.start(name="Ana").status_code == 200
    assert visitor.post("hola\x00 mundo").status_code == 422
    ws, _ready = visitor.open()
    ws.send(json.dumps({"type": "message", "client_message_id": "nul", "text": "a\x00b"}))
    error = frame_until(ws, lambda f: f["type"] == "error")
    assert error["code"] == "invalid_payload" and error["client_message_id"] == "nul"
    assert visitor.post("hola mundo").status_code == 200


# -- who may use the widget, and how much ------------------------------------------------------


def test_site_not_in_allowed_origins_is_refused(api: Api, visitors: Callable[..., Visitor]) -> None:
    channel = create_webchat(api, allowed_origins=[SITE])
    allowed = visitors(api, channel)
    assert allowed.start().status_code == 200
    stranger = visitors(api, channel, origin="https://evil.example", token=allowed.token)
    refused = stranger.start()
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "origin_not_allowed"
    assert stranger.post("hola").status_code == 403
    url = stranger.base.replace("http://", "ws://", 1) + "/ws"
    with connect(url, additional_headers={"Origin": "https://evil.example"}) as ws:
        # Refused before any hello is read.
        assert close_code(ws) == 4403


def test_forged_or_foreign_visitor_token_is_refused(
    api: Api, visitors: Callable[..., Visitor]
) -> None:
    channel = create_webchat(api)
    other = create_webchat(api)
    visitor = visitors(api, channel)
    visitor.start()
    # A token of another channel, and a made-up one.
    elsewhere = visitors(api, other, token=visitor.token)
    assert elsewhere.post("hola").status_code == 401
    forged = visitors(api, channel, token=f"wv1.{uuid.uuid4().hex}.{'0' * 64}")
    response = forged.post("hola")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_visitor"
    url = forged.base.replace("http://", "ws://", 1) + "/ws"
    with connect(url) as ws:
        ws.send(json.dumps({"type": "hello", "token": forged.token}))
        assert close_code(ws) == 4401
    # Nor can anyone post to the channel's webhook without Hilo's own signature.
    direct = httpx.post(
        f"{api.base_url}/webhooks/webchat/{channel['id']}",
        content=json.dumps({"kind": "message"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert direct.status_code == 401


def test_messages_past_the_rate_limit_are_refused(
    api: Api, visitors: Callable[..., Visitor]
) -> None:
    channel = create_webchat(api, messages_per_minute=3)
    visitor = visitors(api, channel)
    visitor.start()
    codes = [visitor.post(f"mensaje {n}").status_code for n in range(5)]
    assert codes[:3] == [200, 200, 200]
    assert codes[3:] == [429, 429]
    refused = visitor.post("otro")
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["message"].startswith("Demasiadas")


def test_oversized_input_is_refused(api: Api, visitors: Callable[..., Visitor]) -> None:
    channel = create_webchat(api)
    visitor = visitors(api, channel)
    visitor.start()
    too_long = visitor.post("x" * 4001)
    assert too_long.status_code == 422
    too_big = httpx.post(
        f"{visitor.base}/messages",
        content=b'{"text":"' + b"x" * 40_000 + b'"}',
        headers={**visitor.headers(), "Content-Type": "application/json"},
    )
    assert too_big.status_code == 413
    ws, _ready = visitor.open()
    ws.send(json.dumps({"type": "message", "client_message_id": "big", "text": "x" * 20_000}))
    assert close_code(ws) == 1009
    ws2, _ready = visitor.open()
    ws2.send("not json")
    assert frame_until(ws2, lambda f: f["type"] == "error")["code"] == "invalid_payload"
    ws2.send(json.dumps({"type": "message", "client_message_id": "a b", "text": "hola"}))
    error = frame_until(ws2, lambda f: f["type"] == "error")
    assert error["client_message_id"] == "a b"


def test_preflight_lets_the_widget_call_from_the_companys_site(api: Api) -> None:
    channel = create_webchat(api)
    response = httpx.options(
        f"{api.base_url}/webchat/{channel['id']}/messages",
        headers={
            "Origin": SITE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-hilo-visitor",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "x-hilo-visitor" in response.headers["access-control-allow-headers"]
    started = httpx.post(f"{api.base_url}/webchat/{channel['id']}/session", json={})
    assert started.headers["access-control-allow-origin"] == "*"


# Several processes share PostgreSQL, never the embedded SQLite file.
@pytest.mark.parametrize("server", ["postgres"], indirect=True)
def test_reply_reaches_a_visitor_connected_to_another_process(
    api: Api, visitors: Callable[..., Visitor], tmp_path: Path
) -> None:
    other = second_server(api, tmp_path, {"HILO_RUN_WORKERS": "false"})
    try:
        channel = create_webchat(api, email_fallback=False)
        visitor = visitors(api, channel)
        visitor.start()
        sent = visitor.post("¿Alguien ahí?").json()
        contact = contact_with(api, sent["message_id"])
        # The socket is on the second process; the reply is sent by the first one's worker.
        on_other = visitors(other_api(api, other.base_url), channel, token=visitor.token)
        ws, _ready = on_other.open()
        reply(api, conversation_of(api, contact["id"]), "Aquí estamos")
        frame_until(ws, shown("Aquí estamos", "agent"))
    finally:
        other.stop()


def other_api(api: Api, base_url: str) -> Api:
    client = Api(base_url=base_url, headers=dict(api.headers), timeout=15)
    client.server = api.server
    return client
