"""The WhatsApp Cloud API channel end to end, over real HTTP, on SQLite and PostgreSQL.

Webhook bodies are Meta's own shapes (pywa's captured fixtures, copied into
``tests/fixtures/whatsapp``) with fresh wamids, wa_ids and phone number ids per test, signed
over the exact bytes sent, as Meta signs them. A local HTTP server plays the Graph API.
"""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from hilo.channels.base import ChannelContext, OutboundMessage, RawRequest, SendError
from hilo.channels.whatsapp import WhatsAppChannel, sign
from hilo.errors import InvalidPayload, InvalidSignature
from tests.conftest import Api, Server, wait_for
from tests.helpers import post_api_message

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "whatsapp"
FIXTURE_PHONE_NUMBER_ID = "1122334455667"
FIXTURE_WA_ID = "972987654321"
FIXTURE_WAMID = "wamid.xyzxyz"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def case(name: str, key: str) -> dict[str, Any]:
    """One webhook body of a keyed fixture file (a deep copy, free to change)."""
    return copy.deepcopy(load(name)[key])


def new_wa_id() -> str:
    """A fresh customer number: a Spanish mobile, as WhatsApp writes it (no +)."""
    return "346" + "".join(secrets.choice("0123456789") for _ in range(8))


def new_wamid() -> str:
    return "wamid." + secrets.token_urlsafe(24)


def replaced(value: Any, mapping: dict[str, str]) -> Any:
    """``value`` with every string equal to a key of ``mapping`` swapped for its value."""
    if isinstance(value, dict):
        return {k: replaced(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [replaced(v, mapping) for v in value]
    if isinstance(value, str):
        return mapping.get(value, value)
    return value


def body_bytes(payload: dict[str, Any]) -> bytes:
    """Serialised as Meta sends it: compact, with non-ASCII escaped."""
    return json.dumps(payload, separators=(",", ":")).encode()


@dataclass
class WhatsApp:
    """A WhatsApp channel of the test's workspace and what Meta would know of it."""

    api: Api
    channel: dict[str, Any]
    phone_number_id: str
    app_secret: str
    access_token: str

    @property
    def id(self) -> str:
        return str(self.channel["id"])

    @property
    def url(self) -> str:
        return f"{self.api.base_url}/webhooks/whatsapp/{self.id}"

    def body(self, payload: dict[str, Any], **mapping: str) -> bytes:
        """A fixture body addressed to this channel, with the given ids swapped in."""
        return body_bytes(
            replaced(payload, {FIXTURE_PHONE_NUMBER_ID: self.phone_number_id, **mapping})
        )

    def post(self, body: bytes, *, signature: str | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if signature != "":
            headers["X-Hub-Signature-256"] = signature or sign(self.app_secret, body)
        return httpx.post(self.url, content=body, headers=headers, timeout=15)


def create_whatsapp(api: Api, *, api_base_url: str | None = None) -> WhatsApp:
    phone_number_id = str(secrets.randbelow(10**15) + 10**14)
    app_secret, access_token = secrets.token_hex(16), "EAAG" + secrets.token_urlsafe(32)
    config = {
        "phone_number_id": phone_number_id,
        "app_secret": app_secret,
        "access_token": access_token,
    }
    if api_base_url:
        config["api_base_url"] = api_base_url
    response = api.post(
        "/api/v1/channels", json={"type": "whatsapp", "name": "WhatsApp", "config": config}
    )
    assert response.status_code == 201, response.text
    channel = response.json()
    assert channel["provider"] == "meta"
    return WhatsApp(api, channel, phone_number_id, app_secret, access_token)


def timeline(api: Api, contact_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/api/v1/contacts/{contact_id}/timeline")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def find_message(api: Api, wamid: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The contact and timeline item of the customer's message ``wamid``, once processed."""
    for contact in api.get("/api/v1/contacts").json()["items"]:
        for item in timeline(api, contact["id"]):
            if item["provider_message_id"] == wamid:
                return contact, item
    return None


def landed(api: Api, wamid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    found: tuple[dict[str, Any], dict[str, Any]] = wait_for(
        lambda: find_message(api, wamid), message=f"message {wamid} in a timeline"
    )
    return found


def inbound_events(server: Server, channel_id: str) -> list[dict[str, Any]]:
    """The channel's stored deliveries, straight from the database."""
    from sqlalchemy import select

    from hilo.db import Database
    from hilo.models import InboundEvent

    async def go() -> list[dict[str, Any]]:
        db = Database(server.db_url, pool_size=1)
        try:
            async with db.transaction() as session:
                rows = await session.scalars(
                    select(InboundEvent).where(InboundEvent.channel_id == uuid.UUID(channel_id))
                )
                return [
                    {"provider_event_id": r.provider_event_id, "status": r.status, "item": r.item}
                    for r in rows
                ]
        finally:
            await db.dispose()

    result: list[dict[str, Any]] = asyncio.run(go())
    return result


def processed(server: Server, channel_id: str, provider_event_id: str) -> dict[str, Any] | None:
    for row in inbound_events(server, channel_id):
        if row["provider_event_id"] == provider_event_id and row["status"] != "pending":
            return row
    return None


@dataclass
class FakeGraph:
    """A local server playing the Graph API's ``/{phone_number_id}/messages``.

    ``answers`` are (status, JSON) pairs used in turn; once used up, every send is accepted
    with a fresh wamid.
    """

    answers: list[tuple[int, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    wamids: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v21.0"

    def start(self) -> FakeGraph:
        graph = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                graph.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": json.loads(self.rfile.read(length)),
                    }
                )
                if graph.answers:
                    status, answer = graph.answers.pop(0)
                else:
                    wamid = new_wamid()
                    graph.wamids.append(wamid)
                    to = graph.requests[-1]["body"].get("to")
                    status, answer = (
                        200,
                        {
                            "messaging_product": "whatsapp",
                            "contacts": [{"input": to, "wa_id": to}],
                            "messages": [{"id": wamid, "message_status": "accepted"}],
                        },
                    )
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def graph() -> Any:
    fake = FakeGraph().start()
    yield fake
    fake.stop()


def customer_writes(wa: WhatsApp, wa_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A text from ``wa_id`` has landed: its contact and timeline item."""
    wamid = new_wamid()
    sent = wa.post(
        wa.body(case("pywa_message.json", "text"), **{FIXTURE_WA_ID: wa_id, FIXTURE_WAMID: wamid})
    )
    assert sent.status_code == 200, sent.text
    return landed(wa.api, wamid)


def reply_and_wait_sent(wa: WhatsApp, conversation_id: str, text: str) -> dict[str, Any]:
    reply = wa.api.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": text})
    assert reply.status_code == 202, reply.text

    def sent() -> dict[str, Any] | None:
        items = wa.api.get(f"/api/v1/conversations/{conversation_id}/messages").json()["items"]
        found = [i for i in items if i["id"] == reply.json()["id"] and i["status"] != "queued"]
        return found[0] if found else None

    message: dict[str, Any] = wait_for(sent, timeout=15, message="reply leaves the queue")
    return message


def message_row(api: Api, conversation_id: str, message_id: str) -> dict[str, Any]:
    items = api.get(f"/api/v1/conversations/{conversation_id}/messages").json()["items"]
    row: dict[str, Any] = next(i for i in items if i["id"] == message_id)
    return row


def status_body(wa: WhatsApp, status: str, wamid: str, wa_id: str) -> bytes:
    return wa.body(
        case("pywa_message_status.json", status), **{FIXTURE_WAMID: wamid, FIXTURE_WA_ID: wa_id}
    )


# -- set-up ----------------------------------------------------------------------------------


def test_whatsapp_verification_handshake_echoes_challenge(api: Api) -> None:
    wa = create_whatsapp(api)
    verify_token = wa.channel["secrets"]["verify_token"]
    assert len(verify_token) >= 24
    assert wa.channel["webhook_url"].endswith(f"/webhooks/whatsapp/{wa.id}")
    assert "app_secret" not in wa.channel["config"]
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": verify_token,
        "hub.challenge": "1158201444",
    }
    response = httpx.get(wa.url, params=params)
    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")


def test_whatsapp_handshake_with_wrong_token_is_403(api: Api) -> None:
    wa = create_whatsapp(api)
    token = wa.channel["secrets"]["verify_token"]
    for params in (
        {"hub.mode": "subscribe", "hub.verify_token": "my-verify-token", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": token, "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ):
        response = httpx.get(wa.url, params=params)
        assert response.status_code == 403, params
        assert response.json()["error"]["code"] == "invalid_verify_token"


def test_whatsapp_channel_config_is_checked(api: Api) -> None:
    response = api.post(
        "/api/v1/channels",
        json={"type": "whatsapp", "name": "WA", "config": {"phone_number_id": "12a"}},
    )
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    for name in ("phone_number_id", "app_secret", "access_token"):
        assert name in message


# -- signatures ------------------------------------------------------------------------------


def test_whatsapp_signature_matches_meta_vector() -> None:
    vector = load("meta_x_hub_signature.json")
    body = vector["raw_body_utf8"].encode()
    assert sign(vector["app_secret"], body) == vector["X-Hub-Signature-256"]
    context = ChannelContext(
        id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        type="whatsapp",
        provider="meta",
        config={"phone_number_id": "1122334455667"},
        secrets={"app_secret": vector["app_secret"]},
    )

    def request(raw: bytes, signature: str) -> RawRequest:
        return RawRequest(
            body=raw,
            headers={"x-hub-signature-256": signature},
            query={},
            url="http://hilo.test/webhooks/whatsapp/x",
            received_at=datetime.now(UTC),
        )

    adapter = WhatsAppChannel()
    adapter.verify(request(body, vector["X-Hub-Signature-256"]), context)
    # The same JSON re-serialised is other bytes: Meta's signature no longer holds.
    reserialised = json.dumps(json.loads(body), indent=1).encode()
    with pytest.raises(InvalidSignature):
        adapter.verify(request(reserialised, vector["X-Hub-Signature-256"]), context)
    with pytest.raises(InvalidSignature):
        adapter.verify(request(body, vector["legacy_X-Hub-Signature"]), context)
    items = adapter.parse_inbound(request(body, ""), context)
    assert [(i.kind, i.provider_event_id, i.text) for i in items] == [
        ("message", "wamid.xyzxyz", "Body Text")
    ]
    with pytest.raises(InvalidPayload):
        adapter.parse_inbound(request(b'{"object":"page","entry":[]}', ""), context)
    with pytest.raises(InvalidPayload):
        adapter.parse_inbound(request(b"{not json", ""), context)


def test_whatsapp_forged_signature_stores_nothing(api: Api) -> None:
    wa = create_whatsapp(api)
    body = wa.body(
        case("pywa_message.json", "text"),
        **{FIXTURE_WA_ID: new_wa_id(), FIXTURE_WAMID: new_wamid()},
    )
    for signature in ("sha256=" + "0" * 64, sign("not-the-app-secret", body), ""):
        response = wa.post(body, signature=signature)
        assert response.status_code == 401, signature
        assert response.json()["error"]["code"] == "invalid_signature"
    tampered = body.replace(b"Body Text", b"Body Test")
    assert wa.post(tampered, signature=sign(wa.app_secret, body)).status_code == 401
    time.sleep(0.3)
    assert api.get("/api/v1/contacts").json()["items"] == []
    assert inbound_events(api.server, wa.id) == []


# -- customers' messages ---------------------------------------------------------------------


def test_whatsapp_text_message_lands_in_contact_timeline_with_verified_phone(api: Api) -> None:
    wa = create_whatsapp(api)
    wa_id, wamid = new_wa_id(), new_wamid()
    words = f"Hola, ¿tenéis cita el martes? {uuid.uuid4().hex}"
    body = wa.body(
        case("pywa_message.json", "text"),
        **{FIXTURE_WA_ID: wa_id, FIXTURE_WAMID: wamid, "Body Text": words},
    )
    assert b"\\u00bf" in body  # non-ASCII escaped, as Meta sends it
    response = wa.post(body)
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True}
    contact, item = landed(api, wamid)
    assert item["text"] == words
    assert item["kind"] == "inbound"
    assert item["channel_id"] == wa.id
    assert item["sent_at"].startswith("2023-10-11T16:53:43")
    assert contact["name"] == "Test Name"
    identities = {(i["kind"], i["value"], i["verified"]) for i in contact["identities"]}
    assert ("phone", f"+{wa_id}", True) in identities
    assert ("whatsapp", wa_id, True) in identities
    # Message text never reaches the logs at info level.
    assert words not in api.server.logs()


def test_whatsapp_same_number_via_api_channel_is_same_contact(api: Api) -> None:
    app = api.post("/api/v1/channels", json={"type": "api", "name": "Shop app"}).json()
    wa = create_whatsapp(api)
    wa_id = new_wa_id()
    first = post_api_message(
        api,
        app["id"],
        app["secret"],
        {
            "id": f"m-{uuid.uuid4().hex}",
            "from": {"id": "shop-7", "phone": f"+{wa_id}"},
            "text": "Pedido 42",
        },
    )
    assert first.status_code == 200, first.text
    wait_for(lambda: api.get("/api/v1/contacts").json()["items"])
    contact, _item = customer_writes(wa, wa_id)
    contacts = api.get("/api/v1/contacts").json()["items"]
    assert [c["id"] for c in contacts] == [contact["id"]]
    items = timeline(api, contact["id"])
    assert [i["text"] for i in items] == ["Pedido 42", "Body Text"]
    assert [i["channel_id"] for i in items] == [app["id"], wa.id]
    assert len({i["conversation_id"] for i in items}) == 1


def test_whatsapp_retry_does_not_duplicate_message(api: Api) -> None:
    wa = create_whatsapp(api)
    wamid = new_wamid()
    body = wa.body(
        case("pywa_message.json", "text"), **{FIXTURE_WA_ID: new_wa_id(), FIXTURE_WAMID: wamid}
    )
    assert wa.post(body).status_code == 200
    assert wa.post(body).status_code == 200
    contact, _item = landed(api, wamid)
    assert wa.post(body).status_code == 200
    time.sleep(0.3)
    assert [i["provider_message_id"] for i in timeline(api, contact["id"])] == [wamid]
    assert [r["provider_event_id"] for r in inbound_events(api.server, wa.id)] == [wamid]


def test_whatsapp_image_message_keeps_media_metadata(api: Api) -> None:
    wa = create_whatsapp(api)
    wamid = new_wamid()
    body = wa.body(
        case("pywa_message.json", "image"), **{FIXTURE_WA_ID: new_wa_id(), FIXTURE_WAMID: wamid}
    )
    assert wa.post(body).status_code == 200
    _contact, item = landed(api, wamid)
    assert item["text"] == ""
    assert item["attachments"] == [
        {
            "type": "image",
            "media_id": "65463453",
            "mime_type": "image/jpeg",
            "sha256": "4654+8g=",
            "caption": None,
        }
    ]


def test_whatsapp_location_message(api: Api) -> None:
    wa = create_whatsapp(api)
    wamid = new_wamid()
    body = wa.body(
        case("pywa_message.json", "chosen_location"),
        **{FIXTURE_WA_ID: new_wa_id(), FIXTURE_WAMID: wamid},
    )
    assert wa.post(body).status_code == 200
    _contact, item = landed(api, wamid)
    assert item["text"] == (
        "📍 37.4611978,-122.2164385 Facebook HQ 1 Hacker Way, Menlo Park, CA 94025"
    )
    row = processed(api.server, wa.id, wamid)
    assert row is not None
    assert row["item"]["data"]["location"]["name"] == "Facebook HQ"
    assert row["item"]["data"]["forwarded"] is True


def test_whatsapp_interactive_button_reply_is_customer_message_with_payload(api: Api) -> None:
    wa = create_whatsapp(api)
    wamid, question = new_wamid(), new_wamid()
    body = wa.body(
        case("interactive_replies.json", "button_reply"),
        **{FIXTURE_WA_ID: new_wa_id(), FIXTURE_WAMID: wamid, "wamid.question": question},
    )
    assert wa.post(body).status_code == 200
    contact, item = landed(api, wamid)
    assert item["text"] == "Sí, confirmo"
    assert (item["kind"], item["sender_type"], item["sender_id"]) == (
        "inbound",
        "contact",
        contact["id"],
    )
    row = processed(api.server, wa.id, wamid)
    assert row is not None and row["status"] == "processed"
    data = row["item"]["data"]
    assert data["payload"] == "confirm-booking-42"
    assert data["reply_type"] == "button_reply"
    assert data["reply_to"] == question


def test_whatsapp_entry_for_another_phone_number_is_ignored(api: Api) -> None:
    wa = create_whatsapp(api)
    wa_id, theirs, ours = new_wa_id(), new_wamid(), new_wamid()
    other_number = case("pywa_message.json", "text")
    other_number["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999000111"
    alone = wa.body(other_number, **{FIXTURE_WA_ID: wa_id, FIXTURE_WAMID: theirs})
    response = wa.post(alone)
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    # One delivery batching both numbers: only this channel's change is taken.
    both = json.loads(alone)
    mine = json.loads(
        wa.body(case("pywa_message.json", "text"), **{FIXTURE_WA_ID: wa_id, FIXTURE_WAMID: ours})
    )
    both["entry"].append(mine["entry"][0])
    assert wa.post(body_bytes(both)).status_code == 200
    landed(api, ours)
    time.sleep(0.3)
    assert find_message(api, theirs) is None
    assert [r["provider_event_id"] for r in inbound_events(api.server, wa.id)] == [ours]


# -- replies and receipts --------------------------------------------------------------------


def test_whatsapp_reply_is_sent_through_graph_api_and_statuses_advance_only_forward(
    api: Api, graph: FakeGraph
) -> None:
    wa = create_whatsapp(api, api_base_url=graph.base_url)
    wa_id = new_wa_id()
    _contact, item = customer_writes(wa, wa_id)
    conversation_id = item["conversation_id"]
    reply = reply_and_wait_sent(wa, conversation_id, "Sí, a las 10:00. ¡Hasta el martes!")
    assert reply["status"] == "sent", reply
    [request] = graph.requests
    assert request["path"] == f"/v21.0/{wa.phone_number_id}/messages"
    assert request["headers"]["authorization"] == f"Bearer {wa.access_token}"
    expected = dict(load("outbound_requests.json")["body"])
    expected.update(
        to=wa_id,
        biz_opaque_callback_data=reply["id"],
        text={"body": "Sí, a las 10:00. ¡Hasta el martes!", "preview_url": False},
    )
    assert request["body"] == expected
    wamid = graph.wamids[0]
    assert reply["provider_message_id"] == wamid

    read = wa.post(status_body(wa, "read", wamid, wa_id))
    assert read.status_code == 200, read.text
    wait_for(lambda: message_row(api, conversation_id, reply["id"])["status"] == "read")
    delivered = wa.post(status_body(wa, "delivered", wamid, wa_id))
    assert delivered.status_code == 200
    wait_for(lambda: processed(api.server, wa.id, f"{wamid}:delivered"))
    assert message_row(api, conversation_id, reply["id"])["status"] == "read"
    trail = api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
    types = [e["type"] for e in trail if e["message_id"] == reply["id"]]
    assert "message.sent" in types and "message.read" in types
    assert "message.delivered" not in types


def test_whatsapp_failed_status_records_provider_error(api: Api, graph: FakeGraph) -> None:
    wa = create_whatsapp(api, api_base_url=graph.base_url)
    wa_id = new_wa_id()
    _contact, item = customer_writes(wa, wa_id)
    conversation_id = item["conversation_id"]
    reply = reply_and_wait_sent(wa, conversation_id, "¿Nos confirmas la dirección?")
    wamid = reply["provider_message_id"]
    assert wa.post(status_body(wa, "failed", wamid, wa_id)).status_code == 200

    def failed() -> dict[str, Any] | None:
        row = message_row(api, conversation_id, reply["id"])
        return row if row["status"] == "failed" else None

    row = wait_for(failed)
    assert "130472" in row["error"]
    assert "User's number is part of an experiment" in row["error"]
    trail = api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
    [event] = [e for e in trail if e["type"] == "message.failed"]
    assert "part of an experiment" in event["data"]["error"]


def test_whatsapp_graph_errors_say_whether_to_retry(graph: FakeGraph) -> None:
    adapter = WhatsAppChannel()
    context = ChannelContext(
        id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        type="whatsapp",
        provider="meta",
        config={"phone_number_id": "106540352242922", "api_base_url": graph.base_url},
        secrets={"access_token": "token", "app_secret": "s", "verify_token": "v"},
    )

    def graph_error(code: int, message: str) -> dict[str, Any]:
        return {
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": message + "."},
                "fbtrace_id": "A1b2",
            }
        }

    graph.answers = [
        (400, graph_error(131047, "Re-engagement message")),
        (400, graph_error(100, "Invalid parameter")),
        (429, graph_error(130429, "Rate limit hit")),
        (400, graph_error(131056, "Pair rate limit hit")),
        (503, {"error": {"message": "Service unavailable", "code": 2}}),
        (200, {"messages": []}),
    ]

    def send(text: str = "Hola") -> SendError:
        message = OutboundMessage(
            message_id=uuid.uuid4(),
            conversation_id=uuid.uuid4(),
            recipient="34612345678",
            text=text,
            created_at=datetime.now(UTC),
        )

        async def go() -> None:
            async with httpx.AsyncClient() as client:
                await adapter.send(client, context, message)

        with pytest.raises(SendError) as caught:
            asyncio.run(go())
        return caught.value

    reengagement = send()
    assert reengagement.retryable is False
    assert "131047" in str(reengagement) and "Re-engagement message" in str(reengagement)
    assert send().retryable is False
    assert send().retryable is True
    assert send().retryable is True
    assert send().retryable is True
    assert send().retryable is False
    too_long = send("x" * 4097)
    assert too_long.retryable is False and "4096" in str(too_long)
    assert len(graph.requests) == 6
    graph.stop()
    assert send().retryable is True


# -- every fixture case ----------------------------------------------------------------------


EXPECTED_KINDS = {
    "text": ("message", "Body Text"),
    "image": ("message", ""),
    "media_with_url": ("message", ""),
    "video": ("message", "caption"),
    "document": ("message", "caption"),
    "audio": ("message", ""),
    "voice": ("message", ""),
    "static_sticker": ("message", ""),
    "animated_sticker": ("message", ""),
    "reaction": ("message", "😮"),
    "unreaction_empty": ("unsupported", ""),
    "unreaction_no_emoji": ("unsupported", ""),
    "current_location": ("message", "📍 12.25089,43.90539"),
    "chosen_location": (
        "message",
        "📍 37.4611978,-122.2164385 Facebook HQ 1 Hacker Way, Menlo Park, CA 94025",
    ),
    "contacts": (
        "message",
        "👤 Chandler Bing (+1 555-555-5555); 👤 Monica (+1 666-666-6666); "
        "👤 Rachel Green (+1 777-777-7777)",
    ),
    "order": (
        "message",
        "🛒 3 × HAMBURGER (30 ILS); 2 × FRENCH_FRIES (35 ILS); 2 × SODA (10 ILS)",
    ),
    "unsupported": ("unsupported", ""),
    "unsupported_with_type": ("unsupported", ""),
    "reply": ("message", "replied text"),
    "forwarded": ("message", "forwarded text"),
    "forwarded_many_times": ("message", "text forwarded many times"),
    "interactive_message_with_err": ("unsupported", ""),
    "referral": ("message", "BODY"),
}


def test_whatsapp_every_fixture_case_parses() -> None:
    adapter = WhatsAppChannel()
    context = ChannelContext(
        id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        type="whatsapp",
        provider="meta",
        config={"phone_number_id": FIXTURE_PHONE_NUMBER_ID},
        secrets={"app_secret": "s"},
    )

    def parse(payload: dict[str, Any]) -> list[Any]:
        raw = RawRequest(
            body=body_bytes(payload),
            headers={},
            query={},
            url="http://hilo.test/",
            received_at=datetime.now(UTC),
        )
        return adapter.parse_inbound(raw, context)

    messages = load("pywa_message.json")
    assert set(messages) == set(EXPECTED_KINDS)
    for key, (kind, text) in EXPECTED_KINDS.items():
        [item] = parse(messages[key])
        assert (item.kind, item.text) == (kind, text), key
        assert item.sender is not None and item.sender.phone == "+972987654321", key
    [reaction] = parse(messages["reaction"])
    assert reaction.data["reaction_to"] == "wamid.yzxyzx="
    [reply] = parse(messages["reply"])
    assert reply.data["reply_to"] == "wamid.xyzxyz=="
    [document] = parse(messages["document"])
    assert document.attachments[0]["filename"] == "filename.pdf"

    statuses = load("pywa_message_status.json")
    expected_status = {
        "sent": "sent",
        "delivered": "delivered",
        "read": "read",
        "played": "read",
        "failed": "failed",
        "with_tracker": "sent",
    }
    for key, status in expected_status.items():
        [item] = parse(statuses[key])
        assert item.kind == "status", key
        assert item.data["provider_message_id"] == "wamid.xyzxyz"
        assert item.data["status"] == status
        raw = statuses[key]["entry"][0]["changes"][0]["value"]["statuses"][0]["status"]
        assert item.provider_event_id == f"wamid.xyzxyz:{raw}"
    assert parse(statuses["group"]) == []  # another phone number id

    replies = load("interactive_replies.json")
    [listed] = parse(replies["list_reply"])
    assert (listed.text, listed.data["payload"]) == ("Martes 10:00", "slot-tue-10")

    system = load("pywa_system.json")
    for key in ("phone_number_change", "identity_change"):
        [item] = parse(system[key])
        assert item.kind == "unsupported", key
        assert item.data["system"]["type"] in ("user_changed_number", "customer_identity_changed")
