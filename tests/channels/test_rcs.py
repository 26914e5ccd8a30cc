"""The RCS channel (Google RBM) end to end, over real HTTP, on SQLite and PostgreSQL.

The signed envelopes of ``tests/fixtures/rcs`` are posted byte for byte with their own
``X-Goog-Signature`` (the channel uses the fixture's client token). Where a test needs fresh
ids (a receipt for a reply Hilo just sent, a new customer), the decoded events of
``rbm_user_events_decoded.json`` are re-enveloped and signed as RBM signs:
``base64(HMAC-SHA512(clientToken, decoded data))``. A local HTTP server plays both the RBM
API (``agentMessages``) and Google's OAuth token endpoint, which checks the service
account's JWT with PyJWT.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hilo.channels.base import ChannelContext, RawRequest, SendError
from hilo.channels.rcs import SCOPE, RcsChannel, sign
from hilo.errors import InvalidSignature
from tests.channels.test_sms import (
    create_sms,
    customer_writes,
    inbound_events,
    landed,
    message_row,
    processed,
    timeline,
)
from tests.channels.test_whatsapp import Answer, Call, LocalApi, json_answer
from tests.conftest import Api, wait_for
from tests.helpers import deliver

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rcs"
FIXTURE_PHONE = "+12223334444"
AGENT_ID = "welcome-bot"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def signed_fixture(key: str) -> tuple[bytes, str]:
    """A fixture envelope as RBM sent it, and its signature."""
    request = load("rbm_webhook_envelopes_signed.json")["requests"][key]
    return json.dumps(request["body"]).encode(), str(request["X-Goog-Signature"])


def decoded(key: str) -> dict[str, Any]:
    """A decoded fixture event (a copy, free to change)."""
    return copy.deepcopy(load("rbm_user_events_decoded.json")[key])


def new_phone() -> str:
    """A fresh customer: a Mexican mobile in E.164."""
    return "+5255" + "".join(secrets.choice("0123456789") for _ in range(8))


def new_event_id() -> str:
    return "Ms" + secrets.token_urlsafe(16)


@dataclass
class Rcs:
    """An RCS channel of the test's workspace and what Google would know of it."""

    api: Api
    channel: dict[str, Any]
    client_token: str

    @property
    def id(self) -> str:
        return str(self.channel["id"])

    @property
    def url(self) -> str:
        return f"{self.api.base_url}/webhooks/rcs/{self.id}"

    def envelope(self, event: dict[str, Any]) -> tuple[bytes, str]:
        """``event`` in a Pub/Sub-style envelope, signed with the channel's client token."""
        data = json.dumps(event, separators=(",", ":")).encode()
        body = {
            "message": {
                "attributes": {},
                "data": base64.b64encode(data).decode(),
                "messageId": str(secrets.randbelow(10**11)),
                "publishTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            },
            "subscription": "projects/rbm-welcome-bot/subscriptions/rbm-agent-subscription",
        }
        return json.dumps(body).encode(), sign(self.client_token, data)

    def post(self, body: bytes, signature: str | None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Goog-Signature"] = signature
        return httpx.post(self.url, content=body, headers=headers, timeout=15)

    def send_event(self, event: dict[str, Any]) -> httpx.Response:
        return self.post(*self.envelope(event))

    def customer_writes(self, phone: str, text: str = "Hola") -> dict[str, Any]:
        """A text from ``phone`` has landed: its timeline item."""
        event = decoded("text")
        event.update(senderPhoneNumber=phone, text=text, messageId=new_event_id())
        response = self.send_event(event)
        assert response.status_code == 200, response.text
        return landed(self.api, event["messageId"])[1]


def service_account(key: rsa.RSAPrivateKey, token_uri: str) -> dict[str, str]:
    """A service-account key file as the Google Cloud console downloads it."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "rbm-welcome-bot",
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": "rbm-agent@rbm-welcome-bot.iam.gserviceaccount.com",
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }


def create_rcs(api: Api, **config: Any) -> Rcs:
    client_token = load("rbm_webhook_envelopes_signed.json")["clientToken"]
    body = {
        "type": "rcs",
        "name": "RCS",
        "config": {
            "agent_id": AGENT_ID,
            "client_token": client_token,
            "access_token": "ya29." + secrets.token_urlsafe(24),
            **config,
        },
    }
    response = api.post("/api/v1/channels", json=body)
    assert response.status_code == 201, response.text
    channel = response.json()
    assert channel["provider"] == "google"
    assert channel["config"] == {
        "agent_id": AGENT_ID,
        "api_base_url": config.get("api_base_url", "https://rcsbusinessmessaging.googleapis.com"),
    }
    rcs = Rcs(api, channel, client_token)
    assert channel["webhook_url"] == rcs.url
    return rcs


def reply_and_wait_done(api: Api, conversation_id: str, text: str) -> dict[str, Any]:
    reply = api.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": text})
    assert reply.status_code == 202, reply.text

    def done() -> dict[str, Any] | None:
        row = message_row(api, conversation_id, reply.json()["id"])
        return row if row["status"] != "queued" else None

    message: dict[str, Any] = wait_for(done, timeout=20, message="reply leaves the queue")
    return message


class FakeRbm(LocalApi):
    """A local server playing RBM's ``agentMessages`` and Google's OAuth token endpoint.

    ``answers`` are (status, JSON) used in turn for agentMessages; once used up, every send
    is accepted as RBM answers it: 200 and the AgentMessage. The token endpoint checks the
    service account's JWT against ``public_key``.
    """

    def __init__(self) -> None:
        super().__init__(self.answer)
        self.answers: list[tuple[int, Any]] = []
        self.token_requests: list[dict[str, Any]] = []
        self.tokens: list[str] = []
        self.public_key: Any = None

    @property
    def base_url(self) -> str:
        return self.origin

    @property
    def token_uri(self) -> str:
        return f"{self.origin}/token"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The agentMessages requests, in order."""
        found = []
        for call in self.calls:
            url = urlsplit(call.path)
            if url.path != "/token":
                found.append(
                    {
                        "path": url.path,
                        "query": parse_qs(url.query),
                        "headers": call.headers,
                        "body": call.json(),
                    }
                )
        return found

    def answer(self, call: Call) -> Answer:
        url = urlsplit(call.path)
        if url.path == "/token":
            return self.token(call)
        if self.answers:
            return json_answer(*self.answers.pop(0))
        message_id = parse_qs(url.query)["messageId"][0]
        phone = url.path.split("/")[3]
        return json_answer(
            200,
            {
                "name": f"phones/{phone}/agentMessages/{message_id}",
                "sendTime": datetime.now(UTC).isoformat(),
                "contentMessage": call.json()["contentMessage"],
            },
        )

    def token(self, call: Call) -> Answer:
        form = {k: v[0] for k, v in parse_qs(call.body.decode()).items()}
        claims = jwt.decode(
            form["assertion"], self.public_key, algorithms=["RS256"], audience=self.token_uri
        )
        self.token_requests.append({"form": form, "claims": claims})
        token = "ya29." + secrets.token_urlsafe(24)
        self.tokens.append(token)
        return json_answer(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})


@pytest.fixture
def rbm() -> Any:
    fake = FakeRbm().start()
    yield fake
    fake.stop()


def google_error(code: int, status: str, message: str, **extra: Any) -> dict[str, Any]:
    """An error answer in Google's shape (``google.rpc.Status``)."""
    return {"error": {"code": code, "message": message, "status": status, **extra}}


def context(base_url: str) -> ChannelContext:
    return ChannelContext(
        id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        type="rcs",
        provider="google",
        config={"agent_id": AGENT_ID, "api_base_url": base_url},
        secrets={"client_token": "t", "access_token": "ya29.fixed"},
    )


# -- set-up and signatures (no server) -------------------------------------------------------


def test_rcs_signature_matches_every_fixture_envelope() -> None:
    fixture = load("rbm_webhook_envelopes_signed.json")
    adapter = RcsChannel()
    channel = ChannelContext(
        id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        type="rcs",
        provider="google",
        config={"agent_id": AGENT_ID},
        secrets={"client_token": fixture["clientToken"]},
    )
    for key, request in fixture["requests"].items():
        data = base64.b64decode(request["body"]["message"]["data"])
        expected = base64.b64encode(
            hmac.new(fixture["clientToken"].encode(), data, hashlib.sha512).digest()
        ).decode()
        assert sign(fixture["clientToken"], data) == expected == request["X-Goog-Signature"], key
        assert json.loads(data) == decoded(key)
        body, signature = signed_fixture(key)

        def raw(signature: str, body: bytes = body) -> RawRequest:
            return RawRequest(
                body=body,
                headers={"x-goog-signature": signature},
                query={},
                url="",
                received_at=datetime.now(UTC),
            )

        adapter.verify(raw(signature), channel)
        with pytest.raises(InvalidSignature):
            adapter.verify(raw(sign("another-token", data)), channel)


def test_rcs_channel_config_is_checked(api: Api) -> None:
    response = api.post(
        "/api/v1/channels",
        json={"type": "rcs", "name": "RCS", "config": {"api_base_url": "ftp:x"}},
    )
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    for name in ("agent_id", "client_token", "service_account", "api_base_url"):
        assert f"config.{name}" in message
    broken_key = api.post(
        "/api/v1/channels",
        json={
            "type": "rcs",
            "name": "RCS",
            "config": {
                "agent_id": AGENT_ID,
                "client_token": "SJENCPGJESMGUFPY",
                "service_account": {"client_email": "x@y", "private_key": "not a key"},
            },
        },
    )
    assert broken_key.status_code == 422
    assert "config.service_account" in broken_key.json()["error"]["message"]


# -- the set-up handshake --------------------------------------------------------------------


def test_rcs_webhook_verification_echoes_the_secret_as_plain_text(api: Api) -> None:
    rcs = create_rcs(api)
    handshake = load("rbm_webhook_envelopes_signed.json")["webhook_verification_handshake"]
    response = rcs.post(json.dumps(handshake["request_body"]).encode(), None)
    assert response.status_code == handshake["expected_response"]["status"]
    assert response.text == handshake["expected_response"]["body"]
    assert response.headers["content-type"].startswith("text/plain")
    # Google may repeat the check: answered the same, stored once.
    assert rcs.post(json.dumps(handshake["request_body"]).encode(), None).text == "1234567890"
    [row] = inbound_events(api.server, rcs.id)
    assert row["item"]["kind"] == "unsupported"
    assert api.get("/api/v1/contacts").json()["items"] == []


def test_rcs_webhook_verification_with_wrong_client_token_is_401(api: Api) -> None:
    rcs = create_rcs(api)
    forged = json.dumps({"clientToken": "NOT-THE-TOKEN", "secret": "1234567890"}).encode()
    response = rcs.post(forged, None)
    assert response.status_code == 401
    assert "1234567890" not in response.text
    assert inbound_events(api.server, rcs.id) == []


# -- customers' messages ---------------------------------------------------------------------


def test_rcs_text_lands_in_contact_timeline_with_verified_phone(api: Api) -> None:
    rcs = create_rcs(api)
    response = rcs.post(*signed_fixture("text"))
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True}
    contact, item = landed(api, decoded("text")["eventId"])
    assert (item["text"], item["kind"], item["channel_id"]) == ("Hi", "inbound", rcs.id)
    assert item["sent_at"].startswith("2024-06-10T12:00:00.123456")
    identities = [(i["kind"], i["value"], i["verified"]) for i in contact["identities"]]
    assert identities == [("phone", FIXTURE_PHONE, True)]


def test_rcs_suggestion_reply_is_customer_message_keeping_postback_data(api: Api) -> None:
    rcs = create_rcs(api)
    assert rcs.post(*signed_fixture("suggestion_response")).status_code == 200
    _contact, item = landed(api, decoded("suggestion_response")["eventId"])
    assert item["text"] == "Talk to an agent"
    assert item["data"] == {"postback_data": "talk_to_agent", "suggestion_type": "REPLY"}


def test_rcs_user_file_keeps_file_metadata(api: Api) -> None:
    rcs = create_rcs(api)
    assert rcs.post(*signed_fixture("user_file")).status_code == 200
    _contact, item = landed(api, decoded("user_file")["eventId"])
    payload = decoded("user_file")["userFile"]["payload"]
    assert item["attachments"] == [
        {
            "type": "image",
            "url": payload["fileUri"],
            "mime_type": "image/gif",
            "file_name": "4_animated.gif",
            "size": 127806,
        }
    ]


def test_rcs_is_typing_is_kept_for_the_trail_only(api: Api) -> None:
    rcs = create_rcs(api)
    assert rcs.post(*signed_fixture("is_typing")).status_code == 200
    row = wait_for(lambda: processed(api.server, rcs.id, decoded("is_typing")["eventId"]))
    assert row["status"] == "unsupported"
    assert row["item"]["data"] == {"type": "is_typing"}
    assert api.get("/api/v1/contacts").json()["items"] == []


def test_rcs_retry_does_not_duplicate_message(api: Api) -> None:
    rcs = create_rcs(api)
    assert rcs.post(*signed_fixture("text")).status_code == 200
    contact, _item = landed(api, decoded("text")["eventId"])
    assert rcs.post(*signed_fixture("text")).status_code == 200
    # The same event in a new Pub/Sub envelope (a new envelope messageId) is the same event.
    assert rcs.send_event(decoded("text")).status_code == 200
    time.sleep(0.3)
    assert len(timeline(api, contact["id"])) == 1
    assert len(inbound_events(api.server, rcs.id)) == 1


def test_rcs_forged_or_malformed_envelopes_store_nothing(api: Api) -> None:
    rcs = create_rcs(api)
    body, signature = signed_fixture("text")
    other = sign("another-token", base64.b64decode(json.loads(body)["message"]["data"]))
    tampered = json.loads(body)
    tampered["message"]["data"] = base64.b64encode(b'{"text":"changed"}').decode()
    for response in (
        rcs.post(body, None),
        rcs.post(body, other),
        rcs.post(json.dumps(tampered).encode(), signature),
        rcs.post(b"not json", signature),
    ):
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "invalid_signature"
    not_json = b"\x00 not an event"
    response = rcs.post(
        json.dumps({"message": {"data": base64.b64encode(not_json).decode()}}).encode(),
        sign(rcs.client_token, not_json),
    )
    assert response.status_code == 422
    no_sender = decoded("text")
    no_sender.pop("senderPhoneNumber")
    assert rcs.send_event(no_sender).status_code == 422
    time.sleep(0.3)
    assert inbound_events(api.server, rcs.id) == []


def test_rcs_event_for_another_agent_is_kept_for_the_trail_only(api: Api) -> None:
    rcs = create_rcs(api)
    event = decoded("text")
    event.update(agentId="someone-else@rbm.goog", eventId=new_event_id())
    assert rcs.send_event(event).status_code == 200
    row = wait_for(lambda: processed(api.server, rcs.id, event["eventId"]))
    assert row["status"] == "unsupported"
    assert api.get("/api/v1/contacts").json()["items"] == []


def test_rcs_same_phone_as_sms_is_one_contact_one_conversation(api: Api) -> None:
    sms = create_sms(api)
    rcs = create_rcs(api)
    phone = new_phone()
    first = customer_writes(sms, phone, "Por SMS")
    item = rcs.customer_writes(phone, "Y ahora por RCS")
    assert item["conversation_id"] == first["conversation_id"]
    contacts = api.get("/api/v1/contacts").json()["items"]
    assert len(contacts) == 1
    assert [i["channel_id"] for i in timeline(api, contacts[0]["id"])] == [sms.id, rcs.id]


# -- replies and receipts --------------------------------------------------------------------


def test_rcs_reply_goes_to_agent_messages_with_our_message_id_and_service_account_token(
    api: Api, rbm: FakeRbm
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rbm.public_key = key.public_key()
    account = service_account(key, rbm.token_uri)
    rcs = create_rcs(api, api_base_url=rbm.base_url, service_account=account, access_token="")
    phone = new_phone()
    item = rcs.customer_writes(phone)
    text = "Hola, ¿en qué podemos ayudarte?"
    reply = reply_and_wait_done(api, item["conversation_id"], text)
    assert reply["status"] == "sent", reply
    assert reply["provider_message_id"] == reply["id"]
    [request] = rbm.requests
    fixture = load("agentMessages_create_request.json")
    assert request["path"] == f"/v1/phones/{phone}/agentMessages"
    assert request["query"] == {"messageId": [reply["id"]], "agentId": [AGENT_ID]}
    assert set(parse_qs(urlsplit(fixture["http"].split()[1]).query)) == set(request["query"])
    assert request["body"] == {"contentMessage": {"text": text}}
    assert set(request["body"]["contentMessage"]) <= set(fixture["body"]["contentMessage"])
    [token_request] = rbm.token_requests
    assert token_request["form"]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert token_request["claims"]["iss"] == account["client_email"]
    assert token_request["claims"]["scope"] == SCOPE
    assert request["headers"]["authorization"] == f"Bearer {rbm.tokens[0]}"
    # The token is used again for the next reply, not minted anew.
    second = reply_and_wait_done(api, item["conversation_id"], "Te llamamos enseguida.")
    assert second["status"] == "sent"
    assert len(rbm.token_requests) == 1 and len(rbm.requests) == 2
    assert rbm.requests[1]["headers"]["authorization"] == f"Bearer {rbm.tokens[0]}"


def test_rcs_receipts_advance_the_reply_only_forward(api: Api, rbm: FakeRbm) -> None:
    rcs = create_rcs(api, api_base_url=rbm.base_url)
    phone = new_phone()
    item = rcs.customer_writes(phone)
    conversation_id = item["conversation_id"]
    reply = reply_and_wait_done(api, conversation_id, "Tu grúa llega en 30 minutos.")
    assert rbm.requests[0]["headers"]["authorization"].startswith("Bearer ya29.")

    def receipt(key: str) -> dict[str, Any]:
        event = decoded(key)
        event.update(senderPhoneNumber=phone, messageId=reply["id"], eventId=new_event_id())
        return event

    read = receipt("read")
    assert rcs.send_event(read).status_code == 200
    wait_for(lambda: message_row(api, conversation_id, reply["id"])["status"] == "read")
    delivered = receipt("delivered")
    assert rcs.send_event(delivered).status_code == 200
    wait_for(lambda: processed(api.server, rcs.id, delivered["eventId"]))
    assert message_row(api, conversation_id, reply["id"])["status"] == "read"
    trail = api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
    types = [e["type"] for e in trail if e["message_id"] == reply["id"]]
    assert "message.read" in types and "message.delivered" not in types


def test_rcs_unreachable_user_fails_the_reply_with_rbm_error(api: Api, rbm: FakeRbm) -> None:
    rcs = create_rcs(api, api_base_url=rbm.base_url)
    item = rcs.customer_writes(new_phone())
    rbm.answers = [(404, google_error(404, "NOT_FOUND", "Requested entity was not found."))]
    reply = reply_and_wait_done(api, item["conversation_id"], "¿Sigues ahí?")
    assert reply["status"] == "failed"
    assert "RBM error 404 NOT_FOUND: Requested entity was not found." in reply["error"]
    assert "cannot be reached over RCS" in reply["error"]
    assert len(rbm.requests) == 1  # not retried


def test_rcs_throttled_reply_is_retried_with_the_same_message_id(api: Api, rbm: FakeRbm) -> None:
    rcs = create_rcs(api, api_base_url=rbm.base_url)
    item = rcs.customer_writes(new_phone())
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}
    rbm.answers = [
        (429, google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", details=[retry_info]))
    ]
    reply = reply_and_wait_done(api, item["conversation_id"], "Vamos para allá")
    assert (reply["status"], reply["error"]) == ("sent", None)
    assert [r["query"]["messageId"] for r in rbm.requests] == [[reply["id"]], [reply["id"]]]


def test_rcs_stop_keyword_opts_out_and_confirms(api: Api, rbm: FakeRbm) -> None:
    rcs = create_rcs(api, api_base_url=rbm.base_url)
    phone = new_phone()
    item = rcs.customer_writes(phone, "BAJA")
    wait_for(lambda: len(rbm.requests) == 1, timeout=15, message="confirmation sent")
    assert rbm.requests[0]["body"]["contentMessage"]["text"].startswith("Ya no recibirás")
    refused = api.post(
        f"/api/v1/conversations/{item['conversation_id']}/messages", json={"text": "¿Seguro?"}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "contact_opted_out"


def test_rcs_api_errors_say_whether_to_retry(rbm: FakeRbm) -> None:
    adapter = RcsChannel()
    channel = context(rbm.base_url)
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
    rbm.answers = [
        (404, google_error(404, "NOT_FOUND", "Requested entity was not found.")),
        (403, google_error(403, "PERMISSION_DENIED", "Agent is not launched on this carrier.")),
        (429, google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", details=[retry_info])),
        (503, google_error(503, "UNAVAILABLE", "The service is currently unavailable.")),
        (401, google_error(401, "UNAUTHENTICATED", "Request had invalid credentials.")),
    ]

    def send(text: str = "Hola", recipient: str = FIXTURE_PHONE) -> SendError | None:
        return deliver(adapter, channel, text=text, recipient=recipient)

    unreachable = send()
    assert unreachable is not None and unreachable.retryable is False
    assert "NOT_FOUND" in str(unreachable) and "over RCS" in str(unreachable)
    not_launched = send()
    assert not_launched is not None and not_launched.retryable is False
    throttled = send()
    assert throttled is not None and (throttled.retryable, throttled.retry_after) == (True, 7.0)
    unavailable = send()
    assert unavailable is not None and unavailable.retryable is True
    # A fixed access token that RBM refuses will not get better by itself.
    unauthenticated = send()
    assert unauthenticated is not None and unauthenticated.retryable is False
    # A messageId RBM has seen: an earlier attempt got through.
    rbm.answers = [(409, google_error(409, "ALREADY_EXISTS", "Message already exists."))]
    assert send() is None
    not_e164 = send(recipient="12223334444")
    assert not_e164 is not None and not_e164.retryable is False
    # Past RBM's text limit, a reply goes in parts, each with its own stable messageId.
    requests_before = len(rbm.requests)
    assert send("palabra " * 500) is None
    parts = rbm.requests[requests_before:]
    assert len(parts) == 2
    assert "".join(p["body"]["contentMessage"]["text"] for p in parts) == "palabra " * 500
    ids = [p["query"]["messageId"][0] for p in parts]
    assert len(set(ids)) == 2 and all(uuid.UUID(i) for i in ids)
    rbm.stop()
    unreachable_server = send()
    assert unreachable_server is not None and unreachable_server.retryable is True
