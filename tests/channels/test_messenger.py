"""The Facebook Messenger channel end to end, over real HTTP, on SQLite and PostgreSQL.

Webhook bodies are Meta's documented shapes (``tests/fixtures/messenger``) with fresh Page
ids, PSIDs and mids per test, signed as Meta signs them: HMAC-SHA256 with the app secret
over the exact bytes sent. A local HTTP server plays the Graph Send API.

The helpers here are shared with ``test_instagram.py`` (same platform, same shapes).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
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
from urllib.parse import urlsplit

import httpx
import pytest

from hilo.channels.base import (
    ChannelAdapter,
    ChannelContext,
    InboundItem,
    OutboundMessage,
    RawRequest,
    SendError,
)
from hilo.channels.messenger import MessengerChannel
from hilo.channels.meta_messaging import answer_hub_challenge, verify_hub_signature
from hilo.errors import Forbidden, InvalidPayload, InvalidSignature
from tests.conftest import Api, wait_for
from tests.helpers import find_message, inbound_events, landed, processed, timeline

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURE_PAGE_ID = "1234567890"
FIXTURE_PSID = "9876543210"
FIXTURE_TEXT_MID = (
    "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_5cgXIbu7I3rBN0P"
)
FIXTURE_OUT_MID = "m_AG5Hz2Uq7tuw_out_1"


# -- shared helpers (Messenger and Instagram) --------------------------------------------------


def load(channel_type: str, name: str) -> dict[str, Any]:
    """A fixture body (a deep copy, free to change)."""
    data: dict[str, Any] = json.loads((FIXTURES / channel_type / name).read_text())
    return copy.deepcopy(data)


def meta_signature(app_secret: str, body: bytes) -> str:
    """``X-Hub-Signature-256`` as Meta computes it, over the exact bytes it sends."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def new_digits(length: int = 16) -> str:
    return str(secrets.randbelow(9 * 10 ** (length - 1)) + 10 ** (length - 1))


def new_mid() -> str:
    return "m_" + secrets.token_urlsafe(32)


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
class MetaChannel:
    """A Messenger or Instagram channel of the test's workspace, and what Meta knows of it."""

    api: Api
    channel: dict[str, Any]
    account_id: str
    fixture_account_id: str
    app_secret: str
    access_token: str

    @property
    def id(self) -> str:
        return str(self.channel["id"])

    @property
    def type(self) -> str:
        return str(self.channel["type"])

    @property
    def url(self) -> str:
        return f"{self.api.base_url}/webhooks/{self.type}/{self.id}"

    def body(self, payload: dict[str, Any], **mapping: str) -> bytes:
        """A fixture body addressed to this channel, with the given ids swapped in."""
        return body_bytes(replaced(payload, {self.fixture_account_id: self.account_id, **mapping}))

    def post(self, body: bytes, *, signature: str | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if signature != "":
            headers["X-Hub-Signature-256"] = signature or meta_signature(self.app_secret, body)
        return httpx.post(self.url, content=body, headers=headers, timeout=15)


def create_messenger(api: Api, *, api_base_url: str | None = None) -> MetaChannel:
    page_id, app_secret = new_digits(15), secrets.token_hex(16)
    token = "EAAG" + secrets.token_urlsafe(32)
    config = {"page_id": page_id, "app_secret": app_secret, "page_access_token": token}
    if api_base_url:
        config["api_base_url"] = api_base_url
    response = api.post(
        "/api/v1/channels", json={"type": "messenger", "name": "Messenger", "config": config}
    )
    assert response.status_code == 201, response.text
    channel = response.json()
    assert channel["provider"] == "meta"
    return MetaChannel(api, channel, page_id, FIXTURE_PAGE_ID, app_secret, token)


def wait_processed(channel: MetaChannel, provider_event_id: str) -> dict[str, Any]:
    row: dict[str, Any] = wait_for(
        lambda: processed(channel.api.server, channel.id, provider_event_id),
        timeout=15,
        message=f"event {provider_event_id} processed",
    )
    return row


@dataclass
class FakeGraph:
    """A local server playing the Graph Send API's ``/{account id}/messages``.

    ``answers`` are (status, JSON[, headers]) used in turn; once used up, every send is
    accepted with a fresh mid, as ``send_api_response.json`` shows.
    """

    answers: list[tuple[Any, ...]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    mids: list[str] = field(default_factory=list)
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
                body = json.loads(self.rfile.read(length))
                parts = urlsplit(self.path)
                graph.requests.append(
                    {
                        "path": parts.path,
                        "query": parts.query,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                headers: dict[str, str] = {}
                if graph.answers:
                    status, answer, *rest = graph.answers.pop(0)
                    headers = rest[0] if rest else {}
                else:
                    mid = new_mid()
                    graph.mids.append(mid)
                    status = 200
                    answer = load("messenger", "send_api_response.json")
                    answer.update(recipient_id=body["recipient"]["id"], message_id=mid)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
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


def reply_and_wait_sent(api: Api, conversation_id: str, text: str) -> dict[str, Any]:
    """An agent's reply through the API, once it has left the queue."""
    reply = api.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": text})
    assert reply.status_code == 202, reply.text

    def sent() -> dict[str, Any] | None:
        items = api.get(f"/api/v1/conversations/{conversation_id}/messages").json()["items"]
        found = [i for i in items if i["id"] == reply.json()["id"] and i["status"] != "queued"]
        return found[0] if found else None

    message: dict[str, Any] = wait_for(sent, timeout=15, message="reply leaves the queue")
    return message


def message_row(api: Api, conversation_id: str, message_id: str) -> dict[str, Any]:
    items = api.get(f"/api/v1/conversations/{conversation_id}/messages").json()["items"]
    row: dict[str, Any] = next(i for i in items if i["id"] == message_id)
    return row


def context_for(adapter: ChannelAdapter, config: dict[str, Any], **secrets: str) -> ChannelContext:
    return ChannelContext(
        id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        type=adapter.type,
        provider="meta",
        config=config,
        secrets=secrets,
    )


def raw(body: bytes, **headers: str) -> RawRequest:
    return RawRequest(
        body=body,
        headers=headers,
        query={},
        url="http://hilo.test/webhooks/x",
        received_at=datetime.now(UTC),
    )


def outbound(text: str, recipient: str = "9876543210") -> OutboundMessage:
    return OutboundMessage(
        message_id=uuid.uuid4(),
        conversation_id=uuid.uuid4(),
        recipient=recipient,
        text=text,
        created_at=datetime.now(UTC),
    )


def send_error(adapter: ChannelAdapter, context: ChannelContext, text: str = "Hola") -> SendError:
    async def go() -> None:
        async with httpx.AsyncClient() as client:
            await adapter.send(client, context, outbound(text))

    with pytest.raises(SendError) as caught:
        asyncio.run(go())
    return caught.value


def graph_error(code: int, message: str, subcode: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "A1b2C3",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


# -- Messenger helpers -------------------------------------------------------------------------


def customer_writes(ms: MetaChannel, psid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A text from ``psid`` has landed: its contact and timeline item."""
    mid = new_mid()
    sent = ms.post(
        ms.body(
            load("messenger", "message_text.json"), **{FIXTURE_PSID: psid, FIXTURE_TEXT_MID: mid}
        )
    )
    assert sent.status_code == 200, sent.text
    return landed(ms.api, mid)


# -- set-up ------------------------------------------------------------------------------------


def test_messenger_handshake(api: Api) -> None:
    ms = create_messenger(api)
    verify_token = ms.channel["secrets"]["verify_token"]
    assert len(verify_token) >= 24
    assert ms.channel["webhook_url"].endswith(f"/webhooks/messenger/{ms.id}")
    assert ms.channel["config"] == {
        "page_id": ms.account_id,
        "api_base_url": "https://graph.facebook.com/v21.0",
    }
    params = {"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": "4242"}
    response = httpx.get(ms.url, params=params)
    assert response.status_code == 200
    assert response.text == "4242"
    assert response.headers["content-type"].startswith("text/plain")
    for wrong in (
        {**params, "hub.verify_token": "my-verify-token"},
        {**params, "hub.mode": "unsubscribe"},
        {"hub.challenge": "4242"},
    ):
        refused = httpx.get(ms.url, params=wrong)
        assert refused.status_code == 403, wrong
        assert refused.json()["error"]["code"] == "invalid_verify_token"


def test_messenger_channel_config_is_checked(api: Api) -> None:
    response = api.post(
        "/api/v1/channels",
        json={"type": "messenger", "name": "FB", "config": {"page_id": "12a"}},
    )
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    for name in ("page_id", "app_secret", "page_access_token"):
        assert name in message


def test_meta_signature_helpers_match_meta_vector() -> None:
    vector = load("messenger", "meta_x_hub_signature.json")
    body = vector["raw_body_utf8"].encode()
    assert meta_signature(vector["app_secret"], body) == vector["X-Hub-Signature-256"]
    verify_hub_signature(
        raw(body, **{"x-hub-signature-256": vector["X-Hub-Signature-256"]}), vector["app_secret"]
    )
    # The same JSON re-serialised is other bytes: Meta's signature no longer holds.
    reserialised = json.dumps(json.loads(body), indent=1).encode()
    for request in (
        raw(reserialised, **{"x-hub-signature-256": vector["X-Hub-Signature-256"]}),
        raw(body, **{"x-hub-signature-256": vector["legacy_X-Hub-Signature"]}),
        raw(body),
    ):
        with pytest.raises(InvalidSignature):
            verify_hub_signature(request, vector["app_secret"])
    with pytest.raises(InvalidSignature):
        verify_hub_signature(
            raw(body, **{"x-hub-signature-256": vector["X-Hub-Signature-256"]}), ""
        )
    handshake = vector["handshake"]
    query = dict(part.split("=") for part in handshake["request"].split("?")[1].split("&"))
    request = RawRequest(b"", {}, query, "http://hilo.test/", datetime.now(UTC))
    assert answer_hub_challenge(request, "my-verify-token") == (200, "1158201444")
    with pytest.raises(Forbidden):
        answer_hub_challenge(request, "another-token")
    with pytest.raises(Forbidden):
        answer_hub_challenge(request, "")


# -- signatures --------------------------------------------------------------------------------


def test_messenger_forged_signature_stores_nothing(api: Api) -> None:
    ms = create_messenger(api)
    body = ms.body(
        load("messenger", "message_text.json"),
        **{FIXTURE_PSID: new_digits(), FIXTURE_TEXT_MID: new_mid()},
    )
    for signature in ("sha256=" + "0" * 64, meta_signature("not-the-app-secret", body), ""):
        response = ms.post(body, signature=signature)
        assert response.status_code == 401, signature
        assert response.json()["error"]["code"] == "invalid_signature"
    tampered = body.replace(b"hello, world!", b"hello, World!")
    assert ms.post(tampered, signature=meta_signature(ms.app_secret, body)).status_code == 401
    time.sleep(0.3)
    assert api.get("/api/v1/contacts").json()["items"] == []
    assert inbound_events(api.server, ms.id) == []


# -- customers' messages -----------------------------------------------------------------------


def test_messenger_text_message_lands_in_contact_timeline(api: Api) -> None:
    ms = create_messenger(api)
    psid, mid = new_digits(), new_mid()
    words = f"Hola, ¿tenéis cita el martes? {uuid.uuid4().hex}"
    body = ms.body(
        load("messenger", "message_text.json"),
        **{FIXTURE_PSID: psid, FIXTURE_TEXT_MID: mid, "hello, world!": words},
    )
    assert b"\\u00bf" in body  # non-ASCII escaped, as Meta sends it
    response = ms.post(body)
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True}
    contact, item = landed(api, mid)
    assert item["text"] == words
    assert item["kind"] == "inbound"
    assert item["channel_id"] == ms.id
    assert item["sent_at"].startswith("2024-06-10T06:13:20")
    identities = {(i["kind"], i["value"], i["verified"]) for i in contact["identities"]}
    assert ("messenger", psid, True) in identities
    # Message text never reaches the logs at info level.
    assert words not in api.server.logs()


def test_messenger_retry_does_not_duplicate(api: Api) -> None:
    ms = create_messenger(api)
    mid = new_mid()
    body = ms.body(
        load("messenger", "message_text.json"),
        **{FIXTURE_PSID: new_digits(), FIXTURE_TEXT_MID: mid},
    )
    assert ms.post(body).status_code == 200
    assert ms.post(body).status_code == 200
    contact, _item = landed(api, mid)
    assert ms.post(body).status_code == 200
    time.sleep(0.3)
    assert [i["provider_message_id"] for i in timeline(api, contact["id"])] == [mid]
    assert [r["provider_event_id"] for r in inbound_events(api.server, ms.id)] == [mid]


def test_messenger_attachment_keeps_metadata(api: Api) -> None:
    ms = create_messenger(api)
    mid = new_mid()
    body = ms.body(
        load("messenger", "message_attachment.json"),
        **{FIXTURE_PSID: new_digits(), "m_attach_1": mid},
    )
    assert ms.post(body).status_code == 200
    _contact, item = landed(api, mid)
    assert item["text"] == ""
    assert item["attachments"] == [
        {"type": "image", "url": "https://scontent.example/attachment.jpg"}
    ]


def test_messenger_reply_to_is_kept_with_the_message(api: Api) -> None:
    ms = create_messenger(api)
    mid, quoted = new_mid(), new_mid()
    body = ms.body(
        load("messenger", "message_reply_to.json"),
        **{FIXTURE_PSID: new_digits(), "m_reply_1": mid, FIXTURE_OUT_MID: quoted},
    )
    assert ms.post(body).status_code == 200
    _contact, item = landed(api, mid)
    assert item["text"] == "yes please"
    row = wait_processed(ms, mid)
    assert row["status"] == "processed"
    assert row["item"]["data"]["reply_to"] == quoted


def test_messenger_postback_is_a_customer_message_carrying_its_payload(api: Api) -> None:
    ms = create_messenger(api)
    psid, mid = new_digits(), new_mid()
    body = ms.body(load("messenger", "postback.json"), **{FIXTURE_PSID: psid, "m_postback_1": mid})
    assert ms.post(body).status_code == 200
    contact, item = landed(api, mid)
    assert item["text"] == "Talk to an agent"
    assert (item["kind"], item["sender_type"], item["sender_id"]) == (
        "inbound",
        "contact",
        contact["id"],
    )
    assert item["sent_at"].startswith("2024-06-10T06:13:26")
    row = wait_processed(ms, mid)
    assert row["status"] == "processed"
    assert row["item"]["data"] == {"payload": "HANDOVER", "reply_type": "postback"}


def test_messenger_echo_is_ignored(api: Api) -> None:
    ms = create_messenger(api)
    psid = new_digits()
    contact, _item = customer_writes(ms, psid)
    echo_mid = new_mid()
    body = ms.body(
        load("messenger", "echo.json"), **{FIXTURE_PSID: psid, FIXTURE_OUT_MID: echo_mid}
    )
    response = ms.post(body)
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    row = wait_processed(ms, f"{echo_mid}:echo")
    assert row["status"] == "unsupported"
    assert row["item"]["kind"] == "unsupported"
    assert row["item"]["sender"] is None
    assert row["item"]["data"]["metadata"] == "hub-msg-42"
    # Never a customer message: the timeline still holds only what the customer wrote.
    assert [i["kind"] for i in timeline(api, contact["id"])] == ["inbound"]
    assert find_message(api, echo_mid) is None
    assert len(api.get("/api/v1/contacts").json()["items"]) == 1


def test_messenger_entry_for_another_page_is_ignored(api: Api) -> None:
    ms = create_messenger(api)
    psid, theirs, ours = new_digits(), new_mid(), new_mid()
    other_page = load("messenger", "message_text.json")
    other_page["entry"][0]["id"] = "999000111"
    alone = ms.body(other_page, **{FIXTURE_PSID: psid, FIXTURE_TEXT_MID: theirs})
    response = ms.post(alone)
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    both = json.loads(alone)
    mine = json.loads(
        ms.body(
            load("messenger", "message_text.json"), **{FIXTURE_PSID: psid, FIXTURE_TEXT_MID: ours}
        )
    )
    both["entry"].append(mine["entry"][0])
    assert ms.post(body_bytes(both)).status_code == 200
    landed(api, ours)
    time.sleep(0.3)
    assert find_message(api, theirs) is None
    assert [r["provider_event_id"] for r in inbound_events(api.server, ms.id)] == [ours]


# -- replies and receipts ----------------------------------------------------------------------


def test_messenger_reply_is_sent_through_send_api(api: Api, graph: FakeGraph) -> None:
    ms = create_messenger(api, api_base_url=graph.base_url)
    psid = new_digits()
    _contact, item = customer_writes(ms, psid)
    text = "Sí, a las 10:00. ¡Hasta el martes!"
    reply = reply_and_wait_sent(api, item["conversation_id"], text)
    assert reply["status"] == "sent", reply
    [request] = graph.requests
    assert request["path"] == f"/v21.0/{ms.account_id}/messages"
    assert request["headers"]["authorization"] == f"Bearer {ms.access_token}"
    assert ms.access_token not in request["query"]
    expected = load("messenger", "send_api_request.json")
    expected["recipient"]["id"] = psid
    expected["message"] = {"text": text, "metadata": reply["id"]}
    assert request["body"] == expected
    assert reply["provider_message_id"] == graph.mids[0]
    assert text not in api.server.logs()


def test_messenger_delivery_receipt_marks_our_message_delivered(api: Api, graph: FakeGraph) -> None:
    ms = create_messenger(api, api_base_url=graph.base_url)
    psid = new_digits()
    _contact, item = customer_writes(ms, psid)
    conversation_id = item["conversation_id"]
    reply = reply_and_wait_sent(api, conversation_id, "¿Nos confirmas la dirección?")
    mid = reply["provider_message_id"]
    body = ms.body(load("messenger", "delivery.json"), **{FIXTURE_PSID: psid, FIXTURE_OUT_MID: mid})
    response = ms.post(body)
    assert response.status_code == 200, response.text
    wait_for(lambda: message_row(api, conversation_id, reply["id"])["status"] == "delivered")
    assert wait_processed(ms, f"{mid}:delivered")["status"] == "processed"
    trail = api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
    types = [e["type"] for e in trail if e["message_id"] == reply["id"]]
    assert "message.sent" in types and "message.delivered" in types


def receipt_with_watermark(name: str, watermark: int) -> dict[str, Any]:
    """A delivery or read receipt fixture carrying only a watermark (no mids)."""
    payload = load("messenger", name)
    event = payload["entry"][0]["messaging"][0]
    event[name.removesuffix(".json")] = {"watermark": watermark}
    event["timestamp"] = watermark + 500
    return payload


def test_messenger_read_watermark_marks_earlier_replies_read(api: Api, graph: FakeGraph) -> None:
    ms = create_messenger(api, api_base_url=graph.base_url)
    psid, other_psid = new_digits(), new_digits()
    _contact, item = customer_writes(ms, psid)
    conversation_id = item["conversation_id"]
    _other, other_item = customer_writes(ms, other_psid)
    earlier = reply_and_wait_sent(api, conversation_id, "Te escribimos mañana.")
    someone_else = reply_and_wait_sent(api, other_item["conversation_id"], "Y a ti también.")
    watermark = int(time.time() * 1000)
    later = reply_and_wait_sent(api, conversation_id, "¿Algo más?")
    body = ms.body(receipt_with_watermark("read.json", watermark), **{FIXTURE_PSID: psid})
    response = ms.post(body)
    assert response.status_code == 200, response.text
    wait_for(lambda: message_row(api, conversation_id, earlier["id"])["status"] == "read")
    assert wait_processed(ms, f"watermark:{psid}:read:{watermark}")["status"] == "processed"
    # Written after the watermark, or to another customer: not read yet.
    assert message_row(api, conversation_id, later["id"])["status"] == "sent"
    other_row = message_row(api, other_item["conversation_id"], someone_else["id"])
    assert other_row["status"] == "sent"
    trail = api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
    read = [e["message_id"] for e in trail if e["type"] == "message.read"]
    assert read == [earlier["id"]]
    # A redelivered receipt changes nothing more.
    assert ms.post(body).status_code == 200
    time.sleep(0.3)
    trail = api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
    assert [e["message_id"] for e in trail if e["type"] == "message.read"] == [earlier["id"]]


def test_messenger_delivery_watermark_marks_earlier_replies_delivered_never_back(
    api: Api, graph: FakeGraph
) -> None:
    ms = create_messenger(api, api_base_url=graph.base_url)
    psid = new_digits()
    _contact, item = customer_writes(ms, psid)
    conversation_id = item["conversation_id"]
    first = reply_and_wait_sent(api, conversation_id, "Primero")
    between = int(time.time() * 1000)
    second = reply_and_wait_sent(api, conversation_id, "Segundo")
    after_both = int(time.time() * 1000)

    def status_of(reply: dict[str, Any]) -> str:
        return str(message_row(api, conversation_id, reply["id"])["status"])

    delivered = ms.body(receipt_with_watermark("delivery.json", after_both), **{FIXTURE_PSID: psid})
    assert ms.post(delivered).status_code == 200
    wait_for(lambda: status_of(first) == status_of(second) == "delivered")
    read = ms.body(receipt_with_watermark("read.json", between), **{FIXTURE_PSID: psid})
    assert ms.post(read).status_code == 200
    wait_for(lambda: status_of(first) == "read")
    assert status_of(second) == "delivered"
    # A later delivery watermark never takes a read reply back.
    again = ms.body(receipt_with_watermark("delivery.json", after_both + 1), **{FIXTURE_PSID: psid})
    assert ms.post(again).status_code == 200
    wait_processed(ms, f"watermark:{psid}:delivered:{after_both + 1}")
    assert (status_of(first), status_of(second)) == ("read", "delivered")


def test_messenger_receipt_from_an_unknown_customer_is_an_orphan(api: Api) -> None:
    ms = create_messenger(api)
    psid, watermark = new_digits(), int(time.time() * 1000)
    body = ms.body(receipt_with_watermark("read.json", watermark), **{FIXTURE_PSID: psid})
    assert ms.post(body).status_code == 200
    assert wait_processed(ms, f"watermark:{psid}:read:{watermark}")["status"] == "orphan"
    assert api.get("/api/v1/contacts").json()["items"] == []


def test_messenger_send_errors_say_whether_to_retry(graph: FakeGraph) -> None:
    adapter = MessengerChannel()
    context = context_for(
        adapter,
        {"page_id": "106540352242922", "api_base_url": graph.base_url},
        page_access_token="token",
        app_secret="s",
        verify_token="v",
    )
    graph.answers = [
        (400, graph_error(10, "This message is sent outside of allowed window.", 2018278)),
        (400, graph_error(100, "Invalid parameter")),
        (
            429,
            graph_error(613, "Calls to this api have exceeded the rate limit."),
            {"Retry-After": "7"},
        ),
        (400, graph_error(613, "Calls to this api have exceeded the rate limit.")),
        (503, {"error": {"message": "Service temporarily unavailable", "code": 2}}),
        (200, {"recipient_id": "9876543210"}),
    ]
    window = send_error(adapter, context)
    assert window.retryable is False
    assert "(#10) This message is sent outside of allowed window." in str(window)
    assert "24-hour" in str(window)
    invalid = send_error(adapter, context)
    assert invalid.retryable is False
    assert "(#100) Invalid parameter" in str(invalid)
    assert invalid.provider_error["fbtrace_id"] == "A1b2C3"
    throttled = send_error(adapter, context)
    assert (throttled.retryable, throttled.retry_after) == (True, 7.0)
    assert send_error(adapter, context).retryable is True
    assert send_error(adapter, context).retryable is True
    assert send_error(adapter, context).retryable is False  # 2xx without a message id
    too_long = send_error(adapter, context, "x" * 2001)
    assert too_long.retryable is False and "2000" in str(too_long)
    assert len(graph.requests) == 6
    graph.stop()
    assert send_error(adapter, context).retryable is True


# -- every fixture case, parsed ----------------------------------------------------------------


def test_messenger_every_fixture_case_parses() -> None:
    adapter = MessengerChannel()
    context = context_for(adapter, {"page_id": FIXTURE_PAGE_ID}, app_secret="s")

    def parse(payload: dict[str, Any]) -> list[InboundItem]:
        return adapter.parse_inbound(raw(body_bytes(payload)), context)

    def summary(name: str) -> list[tuple[str, str, str]]:
        return [(i.kind, i.provider_event_id, i.text) for i in parse(load("messenger", name))]

    assert summary("message_text.json") == [("message", FIXTURE_TEXT_MID, "hello, world!")]
    assert summary("message_attachment.json") == [("message", "m_attach_1", "")]
    assert summary("message_reply_to.json") == [("message", "m_reply_1", "yes please")]
    assert summary("postback.json") == [("message", "m_postback_1", "Talk to an agent")]
    assert summary("echo.json") == [("unsupported", f"{FIXTURE_OUT_MID}:echo", "")]
    # A receipt is applied per mid it names, and again up to its watermark.
    assert summary("delivery.json") == [
        ("status", f"{FIXTURE_OUT_MID}:delivered", ""),
        ("status", f"watermark:{FIXTURE_PSID}:delivered:1718000003000", ""),
    ]
    assert summary("read.json") == [("status", f"watermark:{FIXTURE_PSID}:read:1718000003500", "")]
    delivery, up_to = parse(load("messenger", "delivery.json"))
    assert delivery.data == {"provider_message_id": FIXTURE_OUT_MID, "status": "delivered"}
    assert up_to.data == {"status": "delivered", "watermark": "2024-06-10T06:13:23+00:00"}
    assert up_to.sender is not None and up_to.sender.external_id == FIXTURE_PSID
    [text] = parse(load("messenger", "message_text.json"))
    assert text.sender is not None and text.sender.external_id == FIXTURE_PSID

    # A quick reply carries its payload; a standby event (another app owns the thread) too.
    quick = load("messenger", "message_text.json")
    event = quick["entry"][0].pop("messaging")[0]
    event["message"]["quick_reply"] = {"payload": "SLOT_TUE_10"}
    quick["entry"][0]["standby"] = [event]
    [item] = parse(quick)
    assert item.kind == "message"
    assert item.data == {"payload": "SLOT_TUE_10", "reply_type": "quick_reply", "standby": True}

    # A postback without a mid is keyed on who tapped it and when.
    postback = load("messenger", "postback.json")
    del postback["entry"][0]["messaging"][0]["postback"]["mid"]
    [tapped] = parse(postback)
    assert tapped.provider_event_id == f"postback:{FIXTURE_PSID}:1718000006000"

    # A delivery with only a watermark is applied up to it; one with neither is kept.
    watermark_only = load("messenger", "delivery.json")
    del watermark_only["entry"][0]["messaging"][0]["delivery"]["mids"]
    [receipt] = parse(watermark_only)
    assert receipt.kind == "status"
    assert receipt.provider_event_id == f"watermark:{FIXTURE_PSID}:delivered:1718000003000"
    del watermark_only["entry"][0]["messaging"][0]["delivery"]["watermark"]
    [empty] = parse(watermark_only)
    assert (empty.kind, empty.data) == ("unsupported", {"event": "delivery"})

    # Events Hilo does not handle yet (reactions…) are kept for the trail, keyed stably.
    reaction = load("messenger", "message_text.json")
    reaction["entry"][0]["messaging"][0].pop("message")
    reaction["entry"][0]["messaging"][0]["reaction"] = {
        "mid": FIXTURE_OUT_MID,
        "action": "react",
        "reaction": "love",
        "emoji": "❤",
    }
    [first] = parse(reaction)
    [second] = parse(reaction)
    assert first.kind == "unsupported" and first.data == {"event": "reaction"}
    assert first.provider_event_id == second.provider_event_id

    with pytest.raises(InvalidPayload):
        parse(load("instagram", "message_text.json"))
    with pytest.raises(InvalidPayload):
        adapter.parse_inbound(raw(b"{not json"), context)
    with pytest.raises(InvalidPayload):
        adapter.parse_inbound(raw(b'{"object":"page"}'), context)
