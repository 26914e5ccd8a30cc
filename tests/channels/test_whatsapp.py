"""The WhatsApp channel through Meta's Cloud API, end to end, over real HTTP, on SQLite and
PostgreSQL.

Webhook bodies are Meta's own shapes (pywa's captured fixtures, copied into
``tests/fixtures/whatsapp``) with fresh wamids, wa_ids and phone number ids per test, signed
over the exact bytes sent, as Meta signs them. A local HTTP server plays the Graph API: the
``/messages`` endpoint, and the media endpoints (``GET /{media-id}`` and the file's URL).
"""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from hilo.channels.base import (
    ChannelContext,
    MediaError,
    RawRequest,
    SendError,
)
from hilo.channels.whatsapp import WhatsAppChannel, sign
from hilo.errors import InvalidPayload, InvalidSignature
from tests.conftest import Api, Server, create_workspace_token, wait_for
from tests.helpers import (
    Answer,
    Call,
    LocalApi,
    deliver,
    find_message,
    inbound_events,
    json_answer,
    landed,
    post_api_message,
    processed,
    timeline,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "whatsapp"
FIXTURE_PHONE_NUMBER_ID = "1122334455667"
FIXTURE_WA_ID = "972987654321"
FIXTURE_WAMID = "wamid.xyzxyz"
MiB = 1024 * 1024


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


def new_phone_number_id() -> str:
    return str(secrets.randbelow(10**15) + 10**14)


def replaced(value: Any, mapping: dict[str, str]) -> Any:
    """``value`` with every string equal to a key of ``mapping`` swapped for its value."""
    if isinstance(value, dict):
        return {k: replaced(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [replaced(v, mapping) for v in value]
    if isinstance(value, str):
        return mapping.get(value, value)
    return value


def stamped(payload: dict[str, Any], seconds_ago: float = 0) -> dict[str, Any]:
    """``payload`` with its messages sent ``seconds_ago`` (the fixtures date from 2023)."""
    moment = str(int(time.time() - seconds_ago))
    for entry in payload["entry"]:
        for change in entry["changes"]:
            for message in change["value"].get("messages", []):
                message["timestamp"] = moment
    return payload


def body_bytes(payload: dict[str, Any]) -> bytes:
    """Serialised as Meta sends it: compact, with non-ASCII escaped."""
    return json.dumps(payload, separators=(",", ":")).encode()


# -- a local server playing the Graph API --------------------------------------------------------


class FakeGraph(LocalApi):
    """The Graph API: ``POST /{phone_number_id}/messages``, ``GET /{media-id}``, the files.

    ``answers`` are (status, JSON) pairs for sends, used in turn; once used up, every send is
    accepted with a fresh wamid. ``lookups`` likewise for media look-ups. Every numeric media
    id has a file unless it is in ``gone``; ``files`` sets one's bytes and type, ``declared``
    the size Graph claims for it.
    """

    def __init__(self) -> None:
        super().__init__(self.answer)
        self.answers: list[tuple[int, Any]] = []
        self.lookups: list[tuple[int, Any]] = []
        self.wamids: list[str] = []
        self.files: dict[str, tuple[bytes, str]] = {}
        self.declared: dict[str, int] = {}
        self.gone: set[str] = set()
        self.token = ""

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v21.0"

    @property
    def sends(self) -> list[Call]:
        return [c for c in self.calls if c.method == "POST"]

    def file(self, media_id: str) -> tuple[bytes, str]:
        return self.files.get(media_id, (f"file {media_id}".encode(), "image/jpeg"))

    def answer(self, call: Call) -> Answer:
        path = urlsplit(call.path).path
        if call.method == "POST":
            if self.answers:
                return json_answer(*self.answers.pop(0))
            wamid = new_wamid()
            self.wamids.append(wamid)
            to = call.json().get("to")
            return json_answer(
                200,
                {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": wamid, "message_status": "accepted"}],
                },
            )
        if self.token and call.headers.get("authorization") != f"Bearer {self.token}":
            return json_answer(401, {"error": {"message": "Invalid OAuth token", "code": 190}})
        if path.startswith("/files/"):
            content, mime_type = self.file(path.rpartition("/")[2])
            return 200, {"Content-Type": mime_type}, content
        media_id = path.rpartition("/")[2]
        if self.lookups:
            return json_answer(*self.lookups.pop(0))
        if media_id in self.gone or not media_id.isdigit():
            error = {"message": "Unsupported get request", "code": 100, "error_subcode": 33}
            return json_answer(400, {"error": error})
        content, mime_type = self.file(media_id)
        return json_answer(
            200,
            {
                "messaging_product": "whatsapp",
                "url": f"{self.origin}/files/{media_id}?ext=1&hash=x",
                "mime_type": mime_type,
                "sha256": "x",
                "file_size": self.declared.get(media_id, len(content)),
                "id": media_id,
            },
        )


@pytest.fixture
def graph() -> Any:
    fake = FakeGraph().start()
    yield fake
    fake.stop()


# -- the channel as Meta sees it -----------------------------------------------------------------


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


def create_whatsapp(
    api: Api,
    *,
    api_base_url: str | None = None,
    app_secret: str | None = None,
    templates: list[dict[str, Any]] | None = None,
) -> WhatsApp:
    phone_number_id = new_phone_number_id()
    app_secret = app_secret or secrets.token_hex(16)
    access_token = "EAAG" + secrets.token_urlsafe(32)
    config: dict[str, Any] = {
        "phone_number_id": phone_number_id,
        "app_secret": app_secret,
        "access_token": access_token,
    }
    if api_base_url:
        config["api_base_url"] = api_base_url
    if templates is not None:
        config["templates"] = templates
    response = api.post(
        "/api/v1/channels", json={"type": "whatsapp", "name": "WhatsApp", "config": config}
    )
    assert response.status_code == 201, response.text
    channel = response.json()
    assert channel["provider"] == "meta"
    return WhatsApp(api, channel, phone_number_id, app_secret, access_token)


def attachments_settled(api: Api, provider_id: str) -> list[dict[str, Any]]:
    """The message's attachments once none is still being downloaded."""

    def settled() -> tuple[list[dict[str, Any]]] | None:
        found = find_message(api, provider_id)
        if found is None:
            return None
        attachments: list[dict[str, Any]] = found[1]["attachments"]
        pending = any(a.get("status") == "pending" for a in attachments)
        return None if pending else (attachments,)

    result: tuple[list[dict[str, Any]]] = wait_for(settled, timeout=20, message="media downloaded")
    return result[0]


def customer_writes(
    wa: WhatsApp, wa_id: str, *, seconds_ago: float = 0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A text from ``wa_id``, sent ``seconds_ago``, has landed: its contact and timeline item."""
    wamid = new_wamid()
    payload = stamped(case("pywa_message.json", "text"), seconds_ago)
    sent = wa.post(wa.body(payload, **{FIXTURE_WA_ID: wa_id, FIXTURE_WAMID: wamid}))
    assert sent.status_code == 200, sent.text
    return landed(wa.api, wamid)


def customer_sends(wa: WhatsApp, payload: dict[str, Any]) -> str:
    """A fixture message from a new customer, under a new wamid; its wamid."""
    wamid = new_wamid()
    response = wa.post(wa.body(payload, **{FIXTURE_WA_ID: new_wa_id(), FIXTURE_WAMID: wamid}))
    assert response.status_code == 200, response.text
    return wamid


def message_row(api: Api, conversation_id: str, message_id: str) -> dict[str, Any]:
    items = api.get(f"/api/v1/conversations/{conversation_id}/messages").json()["items"]
    row: dict[str, Any] = next(i for i in items if i["id"] == message_id)
    return row


def send_and_wait(api: Api, conversation_id: str, **body: Any) -> dict[str, Any]:
    """POST a reply and wait until it left the queue (sent or failed)."""
    reply = api.post(f"/api/v1/conversations/{conversation_id}/messages", json=body)
    assert reply.status_code == 202, reply.text

    def left() -> dict[str, Any] | None:
        row = message_row(api, conversation_id, reply.json()["id"])
        return row if row["status"] != "queued" else None

    message: dict[str, Any] = wait_for(left, timeout=15, message="reply leaves the queue")
    return message


def reply_and_wait_sent(wa: WhatsApp, conversation_id: str, text: str) -> dict[str, Any]:
    return send_and_wait(wa.api, conversation_id, text=text)


def status_body(wa: WhatsApp, status: str, wamid: str, wa_id: str) -> bytes:
    return wa.body(
        case("pywa_message_status.json", status), **{FIXTURE_WAMID: wamid, FIXTURE_WA_ID: wa_id}
    )


def other_workspace(server: Server) -> Api:
    token = create_workspace_token(server.db_url, f"other-{uuid.uuid4().hex[:8]}")
    client = Api(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15)
    client.server = server
    return client


TEMPLATES = [
    {
        "name": "recordatorio_cita",
        "language": "es",
        "body": "Hola {{1}}, te recordamos tu cita del {{2}}.",
    },
    {"name": "order_update", "language": "en_US", "body": "Your order has shipped."},
]


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
    unknown = api.post(
        "/api/v1/channels",
        json={"type": "whatsapp", "provider": "gupshup", "name": "WA", "config": {}},
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_provider"
    assert "meta, twilio" in unknown.json()["error"]["message"]


def test_whatsapp_templates_with_gaps_or_bad_names_are_refused(api: Api) -> None:
    config = {
        "phone_number_id": new_phone_number_id(),
        "app_secret": "s",
        "access_token": "t",
        "templates": [
            TEMPLATES[0],
            {"name": "Bad Name", "language": "es", "body": "Hola"},
            {"name": "saltos", "language": "es", "body": "Hola {{1}} y {{3}}"},
            {"name": "recordatorio_cita", "language": "es", "body": "Duplicada"},
        ],
    }
    response = api.post(
        "/api/v1/channels", json={"type": "whatsapp", "name": "WA", "config": config}
    )
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "config.templates[1]" in message and "config.templates[2]" in message
    assert "config.templates[3]" in message and "templates[0]" not in message


def test_whatsapp_templates_are_listed_from_the_channel_config(api: Api) -> None:
    wa = create_whatsapp(api, templates=TEMPLATES)
    response = api.get(f"/api/v1/channels/{wa.id}/templates")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "items": [
            {
                "name": "recordatorio_cita",
                "language": "es",
                "body": "Hola {{1}}, te recordamos tu cita del {{2}}.",
                "params": 2,
            },
            {
                "name": "order_update",
                "language": "en_US",
                "body": "Your order has shipped.",
                "params": 0,
            },
        ]
    }
    # A channel without templates lists none; another workspace's channel is not found.
    plain = create_whatsapp(api)
    assert api.get(f"/api/v1/channels/{plain.id}/templates").json() == {"items": []}
    with other_workspace(api.server) as intruder:
        assert intruder.get(f"/api/v1/channels/{wa.id}/templates").status_code == 404


# -- signatures ------------------------------------------------------------------------------


def meta_context(**config: Any) -> ChannelContext:
    return ChannelContext(
        id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        type="whatsapp",
        provider="meta",
        config={"phone_number_id": FIXTURE_PHONE_NUMBER_ID, **config},
        secrets={"app_secret": "s", "access_token": "token", "verify_token": "v"},
    )


def raw(body: bytes, headers: dict[str, str] | None = None) -> RawRequest:
    return RawRequest(
        body=body,
        headers=headers or {},
        query={},
        url="http://hilo.test/webhooks/whatsapp/x",
        received_at=datetime.now(UTC),
    )


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
    adapter = WhatsAppChannel()
    adapter.verify(raw(body, {"x-hub-signature-256": vector["X-Hub-Signature-256"]}), context)
    # The same JSON re-serialised is other bytes: Meta's signature no longer holds.
    reserialised = json.dumps(json.loads(body), indent=1).encode()
    with pytest.raises(InvalidSignature):
        adapter.verify(
            raw(reserialised, {"x-hub-signature-256": vector["X-Hub-Signature-256"]}), context
        )
    with pytest.raises(InvalidSignature):
        adapter.verify(
            raw(body, {"x-hub-signature-256": vector["legacy_X-Hub-Signature"]}), context
        )
    items = adapter.parse_inbound(raw(body), context)
    assert [(i.kind, i.provider_event_id, i.text, i.account) for i in items] == [
        ("message", "wamid.xyzxyz", "Body Text", "1122334455667")
    ]
    with pytest.raises(InvalidPayload):
        adapter.parse_inbound(raw(b'{"object":"page","entry":[]}'), context)
    with pytest.raises(InvalidPayload):
        adapter.parse_inbound(raw(b"{not json"), context)


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
    assert item["data"]["location"]["name"] == "Facebook HQ"
    assert item["data"]["forwarded"] is True


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
    assert item["data"]["payload"] == "confirm-booking-42"
    assert item["data"]["reply_type"] == "button_reply"
    assert item["data"]["reply_to"] == question


def test_whatsapp_list_reply_is_customer_message_with_the_row_chosen(api: Api) -> None:
    wa = create_whatsapp(api)
    wamid = new_wamid()
    body = wa.body(
        case("interactive_replies.json", "list_reply"),
        **{FIXTURE_WA_ID: new_wa_id(), FIXTURE_WAMID: wamid},
    )
    assert wa.post(body).status_code == 200
    _contact, item = landed(api, wamid)
    assert item["text"] == "Martes 10:00"
    assert (item["data"]["payload"], item["data"]["reply_type"]) == ("slot-tue-10", "list_reply")


def test_whatsapp_user_changed_number_adds_the_new_number_to_the_same_contact(
    api: Api, graph: FakeGraph
) -> None:
    wa = create_whatsapp(api, api_base_url=graph.base_url)
    old, new = new_wa_id(), new_wa_id()
    contact, first = customer_writes(wa, old)
    change = wa.body(
        case("pywa_system.json", "phone_number_change"),
        **{FIXTURE_WA_ID: old, "972912345678": new, "wamid.xyzxyz==": new_wamid()},
    )
    assert wa.post(change).status_code == 200

    def identities() -> set[tuple[str, str, bool]] | None:
        found = api.get(f"/api/v1/contacts/{contact['id']}").json()["identities"]
        values = {(i["kind"], i["value"], i["verified"]) for i in found}
        return values if ("whatsapp", new, True) in values else None

    values = wait_for(identities, message="the new number joins the contact")
    assert ("phone", f"+{new}", True) in values
    assert ("whatsapp", old, True) in values
    # The customer writes from the new number: the same contact, the same conversation.
    same, later = customer_writes(wa, new)
    assert same["id"] == contact["id"]
    assert later["conversation_id"] == first["conversation_id"]
    assert [c["id"] for c in api.get("/api/v1/contacts").json()["items"]] == [contact["id"]]
    # And replies go to the number they use now.
    send_and_wait(api, first["conversation_id"], text="Anotado tu número nuevo.")
    assert graph.sends[-1].json()["to"] == new


def test_whatsapp_identity_change_is_kept_only_for_the_trail(api: Api) -> None:
    wa = create_whatsapp(api)
    wa_id, wamid = new_wa_id(), new_wamid()
    contact, _item = customer_writes(wa, wa_id)
    body = wa.body(
        case("pywa_system.json", "identity_change"), **{FIXTURE_WA_ID: wa_id, FIXTURE_WAMID: wamid}
    )
    assert wa.post(body).status_code == 200
    row = wait_for(lambda: processed(api.server, wa.id, wamid))
    assert row["status"] == "unsupported"
    assert row["item"]["data"]["system"]["type"] == "customer_identity_changed"
    assert len(timeline(api, contact["id"])) == 1


# -- every message fixture, through HTTP -----------------------------------------------------

# key of pywa_message.json → (what it becomes, its text, a check of the timeline item).
Check = Callable[[dict[str, Any]], bool]


def _attachment(kind: str, **extra: Any) -> Check:
    def check(item: dict[str, Any]) -> bool:
        [attachment] = item["attachments"]
        expected = {"type": kind, "status": "stored", **extra}
        return all(attachment.get(k) == v for k, v in expected.items())

    return check


def _data(**expected: Any) -> Check:
    return lambda item: all(item["data"].get(k) == v for k, v in expected.items())


MESSAGE_CASES: dict[str, tuple[str, str, str, Check | None]] = {
    "text": ("text_is_a_message_with_its_body", "message", "Body Text", _data(type="text")),
    "image": ("image_is_downloaded_with_the_message", "message", "", _attachment("image")),
    "media_with_url": (
        "image_with_a_url_is_downloaded_through_its_media_id",
        "message",
        "",
        _attachment("image", media_id="65463453"),
    ),
    "video": (
        "video_keeps_its_caption_and_is_downloaded",
        "message",
        "caption",
        _attachment("video"),
    ),
    "document": (
        "document_keeps_its_filename_and_caption",
        "message",
        "caption",
        _attachment("document", filename="filename.pdf"),
    ),
    "audio": ("audio_is_downloaded", "message", "", _attachment("audio")),
    "voice": (
        "voice_note_is_an_audio_marked_voice",
        "message",
        "",
        _attachment("audio", voice=True),
    ),
    "static_sticker": ("sticker_is_downloaded", "message", "", _attachment("sticker")),
    "animated_sticker": ("animated_sticker_is_downloaded", "message", "", _attachment("sticker")),
    "reaction": (
        "reaction_is_a_message_with_the_emoji_and_what_it_reacts_to",
        "message",
        "😮",
        _data(reaction_to="wamid.yzxyzx="),
    ),
    "unreaction_empty": ("removed_reaction_is_kept_only_for_the_trail", "unsupported", "", None),
    "unreaction_no_emoji": (
        "reaction_without_emoji_is_kept_only_for_the_trail",
        "unsupported",
        "",
        None,
    ),
    "current_location": (
        "current_location_is_a_message_with_the_place",
        "message",
        "📍 12.25089,43.90539",
        lambda item: item["data"]["location"]["latitude"] == 12.25089,
    ),
    "chosen_location": (
        "chosen_location_is_a_message_with_name_and_address",
        "message",
        "📍 37.4611978,-122.2164385 Facebook HQ 1 Hacker Way, Menlo Park, CA 94025",
        lambda item: item["data"]["location"]["name"] == "Facebook HQ",
    ),
    "contacts": (
        "shared_contacts_are_a_message_listing_every_card",
        "message",
        "👤 Chandler Bing (+1 555-555-5555); 👤 Monica (+1 666-666-6666); "
        "👤 Rachel Green (+1 777-777-7777)",
        lambda item: len(item["data"]["contacts"]) == 3,
    ),
    "order": (
        "order_is_a_message_listing_the_products",
        "message",
        "🛒 3 × HAMBURGER (30 ILS); 2 × FRENCH_FRIES (35 ILS); 2 × SODA (10 ILS)",
        lambda item: len(item["data"]["order"]["product_items"]) == 3,
    ),
    "unsupported": ("unsupported_type_is_kept_only_for_the_trail", "unsupported", "", None),
    "unsupported_with_type": (
        "unknown_type_is_kept_with_metas_error",
        "unsupported",
        "",
        None,
    ),
    "reply": (
        "reply_is_a_message_pointing_at_the_one_it_quotes",
        "message",
        "replied text",
        _data(reply_to="wamid.xyzxyz=="),
    ),
    "forwarded": (
        "forwarded_message_is_marked_forwarded",
        "message",
        "forwarded text",
        _data(forwarded=True),
    ),
    "forwarded_many_times": (
        "frequently_forwarded_message_is_marked_forwarded",
        "message",
        "text forwarded many times",
        _data(forwarded=True),
    ),
    "interactive_message_with_err": (
        "interactive_message_without_a_reply_is_kept_only_for_the_trail",
        "unsupported",
        "",
        None,
    ),
    "referral": (
        "message_from_an_ad_keeps_the_referral",
        "message",
        "BODY",
        lambda item: item["data"]["referral"]["source_id"] == "ADID",
    ),
}


def test_whatsapp_message_cases_cover_every_fixture() -> None:
    assert set(MESSAGE_CASES) == set(load("pywa_message.json"))


@pytest.mark.parametrize(
    "key", list(MESSAGE_CASES), ids=[effect for effect, *_rest in MESSAGE_CASES.values()]
)
def test_whatsapp_fixture(api: Api, graph: FakeGraph, key: str) -> None:
    _effect, kind, text, check = MESSAGE_CASES[key]
    wa = create_whatsapp(api, api_base_url=graph.base_url)
    graph.token = wa.access_token
    payload = case("pywa_message.json", key)
    wamid = new_wamid()
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = wamid
    response = wa.post(wa.body(payload, **{FIXTURE_WA_ID: new_wa_id()}))
    assert response.status_code == 200, response.text
    if kind == "unsupported":
        row = wait_for(lambda: processed(api.server, wa.id, wamid))
        assert row["status"] == "unsupported"
        assert api.get("/api/v1/contacts").json()["items"] == []
        if key == "unsupported_with_type":
            assert "131051" in row["item"]["data"]["error"]
        return
    landed(api, wamid)
    attachments_settled(api, wamid)
    _contact, item = landed(api, wamid)
    assert item["text"] == text
    assert check is None or check(item), item


def test_whatsapp_every_fixture_case_parses() -> None:
    adapter = WhatsAppChannel()
    context = meta_context()

    def parse(payload: dict[str, Any]) -> list[Any]:
        return adapter.parse_inbound(raw(body_bytes(payload)), context)

    for key, (_effect, kind, text, _check) in MESSAGE_CASES.items():
        [item] = parse(load("pywa_message.json")[key])
        assert (item.kind, item.text) == (kind, text), key
        assert item.sender is not None and item.sender.phone == "+972987654321", key

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
        raw_status = statuses[key]["entry"][0]["changes"][0]["value"]["statuses"][0]["status"]
        assert item.provider_event_id == f"wamid.xyzxyz:{raw_status}"
    # A group's receipt names another phone number id: the flow routes it by that account.
    [group] = parse(statuses["group"])
    assert group.account == "<BUSINESS_PHONE_NUMBER_ID>"

    system = load("pywa_system.json")
    [changed] = parse(system["phone_number_change"])
    assert changed.kind == "identity"
    assert changed.data["new_sender"]["external_id"] == "972912345678"
    [identity] = parse(system["identity_change"])
    assert identity.kind == "unsupported"


# -- media downloaded at ingest ----------------------------------------------------------------


def test_whatsapp_image_is_downloaded_at_ingest_and_served_only_to_its_workspace(
    api: Api, graph: FakeGraph
) -> None:
    wa = create_whatsapp(api, api_base_url=graph.base_url)
    graph.token = wa.access_token
    picture = b"\xff\xd8\xff\xe0" + secrets.token_bytes(2048)
    graph.files["65463453"] = (picture, "image/jpeg")
    wamid = customer_sends(wa, case("pywa_message.json", "image"))
    [attachment] = attachments_settled(api, wamid)
    assert attachment["status"] == "stored"
    assert (attachment["type"], attachment["media_id"], attachment["size"]) == (
        "image",
        "65463453",
        len(picture),
    )
    # Graph was asked for the file's URL, then the file, both with the channel's token.
    paths = [urlsplit(c.path).path for c in graph.calls]
    assert paths == ["/v21.0/65463453", "/files/65463453"]
    assert all(c.headers["authorization"] == f"Bearer {wa.access_token}" for c in graph.calls)

    served = api.get(f"/api/v1/attachments/{attachment['attachment_id']}")
    assert served.status_code == 200
    assert served.content == picture
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["x-content-type-options"] == "nosniff"
    with other_workspace(api.server) as intruder:
        assert intruder.get(f"/api/v1/attachments/{attachment['attachment_id']}").status_code == 404
    anonymous = httpx.get(f"{api.base_url}/api/v1/attachments/{attachment['attachment_id']}")
    assert anonymous.status_code == 401
    # A customer's file has no public link.
    no_link = httpx.get(f"{api.base_url}/media/{attachment['attachment_id']}")
    assert no_link.status_code == 404
    trail = api.get(f"/api/v1/conversations/{landed(api, wamid)[1]['conversation_id']}/events")
    assert "message.media_stored" in [e["type"] for e in trail.json()["items"]]


def test_whatsapp_media_declared_over_the_limit_is_kept_as_oversize_without_download(
    api: Api, graph: FakeGraph
) -> None:
    wa = create_whatsapp(api, api_base_url=graph.base_url)
    payload = case("pywa_message.json", "video")
    media_id = payload["entry"][0]["changes"][0]["value"]["messages"][0]["video"]["id"]
    graph.declared[media_id] = 90 * MiB
    wamid = customer_sends(wa, payload)
    [attachment] = attachments_settled(api, wamid)
    assert (attachment["status"], attachment["size"]) == ("oversize", 90 * MiB)
    assert "attachment_id" not in attachment
    assert [urlsplit(c.path).path for c in graph.calls] == [f"/v21.0/{media_id}"]
    _contact, item = landed(api, wamid)
    assert item["text"] == "caption"


def test_whatsapp_media_larger_than_declared_stops_at_the_limit_and_is_oversize(
    api: Api, graph: FakeGraph
) -> None:
    wa = create_whatsapp(api, api_base_url=graph.base_url)
    # Graph claims a small file and then sends one past Hilo's 16 MiB limit.
    graph.files["1234567890987654321"] = (b"\0" * (16 * MiB + 1), "application/pdf")
    graph.declared["1234567890987654321"] = 1000
    wamid = customer_sends(wa, case("pywa_message.json", "document"))
    [attachment] = attachments_settled(api, wamid)
    assert attachment["status"] == "oversize"
    assert "attachment_id" not in attachment


def test_whatsapp_media_graph_no_longer_has_is_marked_unavailable(
    api: Api, graph: FakeGraph
) -> None:
    wa = create_whatsapp(api, api_base_url=graph.base_url)
    graph.gone.add("65463453")
    wamid = customer_sends(wa, case("pywa_message.json", "image"))
    [attachment] = attachments_settled(api, wamid)
    assert attachment["status"] == "unavailable"
    assert "(#100)" in attachment["error"]
    assert len(graph.calls) == 1  # a permanent refusal is not retried


def test_whatsapp_media_download_is_retried_while_graph_is_down(api: Api, graph: FakeGraph) -> None:
    wa = create_whatsapp(api, api_base_url=graph.base_url)
    graph.lookups = [(503, {"error": {"message": "Service unavailable", "code": 2}})]
    wamid = customer_sends(wa, case("pywa_message.json", "image"))
    # The message is there at once; its file follows once Graph answers.
    _contact, item = landed(api, wamid)
    [attachment] = attachments_settled(api, wamid)
    assert attachment["status"] == "stored"
    paths = [urlsplit(c.path).path for c in graph.calls]
    assert paths == ["/v21.0/65463453", "/v21.0/65463453", "/files/65463453"]
    assert item["text"] == ""


def test_whatsapp_media_errors_say_whether_to_retry(graph: FakeGraph) -> None:
    adapter = WhatsAppChannel()
    context = meta_context(api_base_url=graph.base_url)
    graph.lookups = [
        (429, {"error": {"message": "Rate limit", "code": 130429}}),
        (400, {"error": {"message": "Invalid parameter", "code": 100}}),
        (200, {"id": "1"}),
    ]

    def locate(media_id: str = "1") -> MediaError:
        async def go() -> None:
            async with httpx.AsyncClient() as client:
                await adapter.media_location(client, context, {"media_id": media_id})

        with pytest.raises(MediaError) as caught:
            asyncio.run(go())
        return caught.value

    assert locate().retryable is True
    assert locate().retryable is False
    assert locate().retryable is False  # answered without a url
    graph.stop()
    assert locate().retryable is True


# -- one Meta app, several numbers -------------------------------------------------------------


def test_whatsapp_entry_for_another_number_of_the_workspace_lands_on_that_channel(
    api: Api,
) -> None:
    app_secret = secrets.token_hex(16)  # one Meta app: one secret for both numbers
    first = create_whatsapp(api, app_secret=app_secret)
    second = create_whatsapp(api, app_secret=app_secret)
    wa_id, to_first, to_second = new_wa_id(), new_wamid(), new_wamid()
    both = json.loads(
        first.body(
            case("pywa_message.json", "text"), **{FIXTURE_WA_ID: wa_id, FIXTURE_WAMID: to_first}
        )
    )
    other = json.loads(
        second.body(
            case("pywa_message.json", "text"), **{FIXTURE_WA_ID: wa_id, FIXTURE_WAMID: to_second}
        )
    )
    both["entry"].append(other["entry"][0])
    # Meta calls the app's one callback URL: the first channel's.
    assert first.post(body_bytes(both)).status_code == 200
    _contact, on_first = landed(api, to_first)
    _contact, on_second = landed(api, to_second)
    assert on_first["channel_id"] == first.id
    assert on_second["channel_id"] == second.id
    assert [r["provider_event_id"] for r in inbound_events(api.server, first.id)] == [to_first]
    assert [r["provider_event_id"] for r in inbound_events(api.server, second.id)] == [to_second]
    # The same delivery again, now at the second channel's URL: stored once all the same.
    assert second.post(body_bytes(both)).status_code == 200
    time.sleep(0.3)
    assert len(inbound_events(api.server, second.id)) == 1


def test_whatsapp_entry_for_a_number_of_another_workspace_never_crosses_over(
    api: Api,
) -> None:
    app_secret = secrets.token_hex(16)
    mine = create_whatsapp(api, app_secret=app_secret)
    with other_workspace(api.server) as them:
        theirs = create_whatsapp(them, app_secret=app_secret)
        wamid = new_wamid()
        payload = case("pywa_message.json", "text")
        body = body_bytes(
            replaced(
                payload,
                {
                    FIXTURE_PHONE_NUMBER_ID: theirs.phone_number_id,
                    FIXTURE_WA_ID: new_wa_id(),
                    FIXTURE_WAMID: wamid,
                },
            )
        )
        response = mine.post(body)
        assert response.status_code == 200
        assert response.json() == {"ok": True}
        time.sleep(0.5)
        assert inbound_events(api.server, mine.id) == []
        assert inbound_events(api.server, theirs.id) == []
        assert them.get("/api/v1/contacts").json()["items"] == []
    assert api.get("/api/v1/contacts").json()["items"] == []


def test_whatsapp_entry_for_a_number_of_another_meta_app_is_not_routed(api: Api) -> None:
    mine = create_whatsapp(api)
    # Another number of the workspace, but connected through another Meta app.
    elsewhere = create_whatsapp(api)
    wamid = new_wamid()
    body = elsewhere.body(
        case("pywa_message.json", "text"), **{FIXTURE_WA_ID: new_wa_id(), FIXTURE_WAMID: wamid}
    )
    # Signed with the first app's secret: it does not speak for the second app's number.
    assert mine.post(body).status_code == 200
    time.sleep(0.5)
    assert inbound_events(api.server, elsewhere.id) == []
    assert inbound_events(api.server, mine.id) == []
    assert "not signed with its credentials" in api.server.logs()


def test_whatsapp_status_for_a_number_of_the_workspace_is_applied_on_that_channel(
    api: Api, graph: FakeGraph
) -> None:
    app_secret = secrets.token_hex(16)
    first = create_whatsapp(api, api_base_url=graph.base_url, app_secret=app_secret)
    second = create_whatsapp(api, api_base_url=graph.base_url, app_secret=app_secret)
    wa_id = new_wa_id()
    _contact, item = customer_writes(second, wa_id)
    reply = reply_and_wait_sent(second, item["conversation_id"], "Hecho.")
    # The receipt comes to the first channel's URL, naming the second number.
    assert first.post(status_body(second, "read", reply["provider_message_id"], wa_id)).is_success
    wait_for(lambda: message_row(api, item["conversation_id"], reply["id"])["status"] == "read")


# -- replies, receipts, templates and the 24-hour window --------------------------------------


def test_whatsapp_reply_is_sent_through_graph_api_and_statuses_advance_only_forward(
    api: Api, graph: FakeGraph
) -> None:
    wa = create_whatsapp(api, api_base_url=graph.base_url)
    wa_id = new_wa_id()
    _contact, item = customer_writes(wa, wa_id)
    conversation_id = item["conversation_id"]
    reply = reply_and_wait_sent(wa, conversation_id, "Sí, a las 10:00. ¡Hasta el martes!")
    assert reply["status"] == "sent", reply
    [request] = graph.sends
    assert request.path == f"/v21.0/{wa.phone_number_id}/messages"
    assert request.headers["authorization"] == f"Bearer {wa.access_token}"
    expected = dict(load("outbound_requests.json")["body"])
    expected.update(
        to=wa_id,
        biz_opaque_callback_data=reply["id"],
        text={"body": "Sí, a las 10:00. ¡Hasta el martes!", "preview_url": False},
    )
    assert request.json() == expected
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


STATUS_CASES = {
    "sent": ("sent_receipt_keeps_the_reply_sent", "sent"),
    "delivered": ("delivered_receipt_marks_the_reply_delivered", "delivered"),
    "read": ("read_receipt_marks_the_reply_read", "read"),
    "played": ("played_voice_note_counts_as_read", "read"),
    "failed": ("failed_receipt_marks_the_reply_failed_with_metas_error", "failed"),
    "with_tracker": ("receipt_with_our_tracker_keeps_the_reply_sent", "sent"),
}


@pytest.mark.parametrize(
    "key", list(STATUS_CASES), ids=[effect for effect, _status in STATUS_CASES.values()]
)
def test_whatsapp_status_fixture(api: Api, graph: FakeGraph, key: str) -> None:
    _effect, status = STATUS_CASES[key]
    wa = create_whatsapp(api, api_base_url=graph.base_url)
    wa_id = new_wa_id()
    _contact, item = customer_writes(wa, wa_id)
    reply = reply_and_wait_sent(wa, item["conversation_id"], "¿Nos confirmas la dirección?")
    wamid = reply["provider_message_id"]
    assert wa.post(status_body(wa, key, wamid, wa_id)).status_code == 200
    raw_status = case("pywa_message_status.json", key)["entry"][0]["changes"][0]["value"]
    row = wait_for(
        lambda: processed(api.server, wa.id, f"{wamid}:{raw_status['statuses'][0]['status']}")
    )
    assert row["status"] == "processed"
    after = message_row(api, item["conversation_id"], reply["id"])
    assert after["status"] == status
    if status == "failed":
        assert "130472" in after["error"]
        assert "User's number is part of an experiment" in after["error"]


def test_whatsapp_status_of_a_group_of_a_number_not_here_is_ignored(api: Api) -> None:
    wa = create_whatsapp(api)
    body = body_bytes(case("pywa_message_status.json", "group"))
    assert wa.post(body).status_code == 200
    time.sleep(0.3)
    assert inbound_events(api.server, wa.id) == []


def test_whatsapp_graph_errors_say_whether_to_retry(graph: FakeGraph) -> None:
    adapter = WhatsAppChannel()
    context = meta_context(api_base_url=graph.base_url)

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
        refused = deliver(adapter, context, text=text, recipient="34612345678")
        assert refused is not None
        return refused

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
    assert len(graph.sends) == 6
    graph.stop()
    assert send().retryable is True


def test_whatsapp_plain_reply_outside_the_24_hour_window_is_409(api: Api, graph: FakeGraph) -> None:
    wa = create_whatsapp(api, api_base_url=graph.base_url, templates=TEMPLATES)
    wa_id = new_wa_id()
    # Meta's timestamp says when the customer wrote, even if the webhook came late.
    _contact, item = customer_writes(wa, wa_id, seconds_ago=25 * 3600)
    url = f"/api/v1/conversations/{item['conversation_id']}/messages"
    refused = api.post(url, json={"text": "¿Sigues ahí?"})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "whatsapp_window_closed"
    assert "24 hours" in refused.json()["error"]["message"]
    spanish = api.post(url, json={"text": "¿Sigues ahí?"}, headers={"Accept-Language": "es-MX"})
    assert "24 horas" in spanish.json()["error"]["message"]
    # Notes are never sent: the window does not apply to them.
    note = api.post(url, json={"text": "Llamar mañana", "private": True})
    assert note.status_code == 202
    assert graph.sends == []
    # The customer writes again: the window is open for another 24 hours.
    customer_writes(wa, wa_id)
    assert send_and_wait(api, item["conversation_id"], text="¡Aquí estamos!")["status"] == "sent"


def test_whatsapp_template_is_sent_outside_the_window_with_its_values(
    api: Api, graph: FakeGraph
) -> None:
    wa = create_whatsapp(api, api_base_url=graph.base_url, templates=TEMPLATES)
    wa_id = new_wa_id()
    _contact, item = customer_writes(wa, wa_id, seconds_ago=3 * 86400)
    template = {"name": "recordatorio_cita", "language": "es", "params": ["Lucía", "martes 10:00"]}
    sent = send_and_wait(api, item["conversation_id"], template=template)
    assert sent["status"] == "sent"
    # The agent sees what the customer reads.
    assert sent["text"] == "Hola Lucía, te recordamos tu cita del martes 10:00."
    assert sent["data"]["template"] == template
    [request] = graph.sends
    expected = dict(load("outbound_requests.json")["template_body_example"])
    expected.update(
        to=wa_id,
        biz_opaque_callback_data=sent["id"],
        template={
            "name": "recordatorio_cita",
            "language": {"code": "es"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Lucía"},
                        {"type": "text", "text": "martes 10:00"},
                    ],
                }
            ],
        },
    )
    assert request.json() == expected
    # A template without values is sent without components.
    plain = send_and_wait(
        api, item["conversation_id"], template={"name": "order_update", "language": "en_US"}
    )
    assert plain["text"] == "Your order has shipped."
    assert "components" not in graph.sends[-1].json()["template"]


def test_whatsapp_wrong_template_use_is_422(api: Api, graph: FakeGraph) -> None:
    wa = create_whatsapp(api, api_base_url=graph.base_url, templates=TEMPLATES)
    wa_id = new_wa_id()
    _contact, item = customer_writes(wa, wa_id)
    url = f"/api/v1/conversations/{item['conversation_id']}/messages"
    cases = [
        ({"template": {"name": "no_existe", "language": "es"}}, "unknown_template"),
        ({"template": {"name": "recordatorio_cita", "language": "en_US"}}, "unknown_template"),
        ({"template": {"name": "recordatorio_cita", "language": "es"}}, "template_params"),
        (
            {"template": {"name": "order_update", "language": "en_US"}, "private": True},
            "invalid_template_use",
        ),
        (
            {"template": {"name": "order_update", "language": "en_US"}, "text": "y esto"},
            "invalid_template_use",
        ),
        ({"text": "   "}, "empty_text"),
    ]
    for body, code in cases:
        response = api.post(url, json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == code, body
    # Another number of the workspace, without templates, has none to send.
    plain = create_whatsapp(api, api_base_url=graph.base_url)
    customer_writes(plain, wa_id)
    other = api.post(
        url,
        json={"template": {"name": "order_update", "language": "en_US"}, "channel_id": plain.id},
    )
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "unknown_template"
    assert graph.sends == []


# -- files we send -------------------------------------------------------------------------------


def upload(api: Api, content: bytes, mime_type: str, filename: str) -> dict[str, Any]:
    response = api.post(
        "/api/v1/attachments",
        params={"filename": filename},
        content=content,
        headers={"Content-Type": mime_type},
    )
    assert response.status_code == 201, response.text
    uploaded: dict[str, Any] = response.json()
    return uploaded


def test_whatsapp_reply_with_a_file_sends_a_link_meta_can_fetch_once_signed(
    api: Api, graph: FakeGraph
) -> None:
    wa = create_whatsapp(api, api_base_url=graph.base_url)
    wa_id = new_wa_id()
    _contact, item = customer_writes(wa, wa_id)
    invoice = b"%PDF-1.4 " + secrets.token_bytes(512)
    uploaded = upload(api, invoice, "application/pdf", "factura 42.pdf")
    assert (uploaded["kind"], uploaded["size"], uploaded["filename"]) == (
        "document",
        len(invoice),
        "factura 42.pdf",
    )
    sent = send_and_wait(
        api, item["conversation_id"], text="Tu factura", attachment_ids=[uploaded["id"]]
    )
    assert sent["status"] == "sent"
    assert sent["attachments"][0]["attachment_id"] == uploaded["id"]
    body = graph.sends[-1].json()
    assert body["type"] == "document"
    document = body["document"]
    assert (document["caption"], document["filename"]) == ("Tu factura", "factura 42.pdf")
    # Meta fetches the file from the link, without any Hilo credentials.
    fetched = httpx.get(document["link"])
    assert fetched.status_code == 200
    assert fetched.content == invoice
    assert fetched.headers["content-disposition"].startswith("attachment;")
    tampered = document["link"].replace("signature=", "signature=0")
    assert httpx.get(tampered).status_code == 404
    expired = document["link"].replace("expires=", "expires=1")
    assert httpx.get(expired).status_code == 404


def test_whatsapp_file_rules_are_checked_before_queueing(api: Api, graph: FakeGraph) -> None:
    wa = create_whatsapp(api, api_base_url=graph.base_url)
    _contact, item = customer_writes(wa, new_wa_id())
    url = f"/api/v1/conversations/{item['conversation_id']}/messages"
    photo = upload(api, b"\x89PNG" + secrets.token_bytes(64), "image/png", "a.png")
    voice = upload(api, b"OggS" + secrets.token_bytes(64), "audio/ogg", "nota.ogg")
    for body in (
        {"attachment_ids": [photo["id"], voice["id"]]},
        {"attachment_ids": [voice["id"]], "text": "escúchalo"},
        {"attachment_ids": [photo["id"]], "text": "x" * 1025},
    ):
        response = api.post(url, json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "whatsapp_media_rules"
    alone = send_and_wait(api, item["conversation_id"], attachment_ids=[voice["id"]])
    assert alone["status"] == "sent"
    assert set(graph.sends[-1].json()["audio"]) == {"link"}  # no caption on audio
    # Another workspace's file cannot be sent.
    with other_workspace(api.server) as them:
        theirs = upload(them, b"secret", "text/plain", "x.txt")
    assert api.post(url, json={"attachment_ids": [theirs["id"]]}).status_code == 404


def test_attachment_upload_is_size_limited_and_never_empty(api: Api) -> None:
    empty = api.post("/api/v1/attachments", content=b"", headers={"Content-Type": "image/png"})
    assert empty.status_code == 422
    assert empty.json()["error"]["code"] == "empty_file"
    huge = api.post(
        "/api/v1/attachments", content=b"\0" * (16 * MiB + 1), headers={"Content-Type": "video/mp4"}
    )
    assert huge.status_code == 413
    html = upload(api, b"<script>alert(1)</script>", "text/html", "../../x.html")
    assert html["filename"] == "x.html"
    served = api.get(f"/api/v1/attachments/{html['id']}")
    assert served.headers["content-disposition"].startswith("attachment;")
    assert "sandbox" in served.headers["content-security-policy"]
