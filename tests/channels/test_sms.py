"""The SMS channel (Twilio) end to end, over real HTTP, on SQLite and PostgreSQL.

Webhook bodies are Twilio's form parameters (``tests/fixtures/twilio``) with fresh
MessageSids and numbers per test, form-encoded and signed with the ``twilio`` package's own
``RequestValidator`` for the URL Twilio would have called. A local HTTP server plays
Twilio's Messages API.
"""

from __future__ import annotations

import asyncio
import base64
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
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
from twilio.request_validator import RequestValidator

from hilo.channels import whatsapp
from hilo.channels.base import ChannelContext, OutboundMessage, RawRequest, SendError
from hilo.channels.sms import SmsChannel, signature
from hilo.errors import InvalidPayload, InvalidSignature
from tests.conftest import Api, wait_for
from tests.helpers import inbound_events, landed, processed, timeline

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "twilio"
PROXY_HOST = "hilo.example.com"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def webhook(key: str) -> dict[str, str]:
    """One parameter set of ``webhook_params.json`` (a copy, free to change)."""
    return dict(load("webhook_params.json")["params"][key])


def new_sid(prefix: str = "SM") -> str:
    return prefix + secrets.token_hex(16)


def new_phone() -> str:
    """A fresh customer number: a Spanish mobile in E.164."""
    return "+346" + "".join(secrets.choice("0123456789") for _ in range(8))


def twiml_ok(response: httpx.Response) -> bool:
    """A 200 with empty TwiML, rendered as XML or (until the endpoint does) as JSON."""
    if response.status_code != 200:
        return False
    if "xml" in response.headers.get("content-type", ""):
        return "<Response" in response.text
    answer: Any = response.json()
    return answer == "<Response/>"


@dataclass
class Sms:
    """An SMS channel of the test's workspace and what Twilio would know of it."""

    api: Api
    channel: dict[str, Any]
    account_sid: str
    auth_token: str
    phone_number: str

    @property
    def id(self) -> str:
        return str(self.channel["id"])

    @property
    def url(self) -> str:
        """The webhook URL as the server sees it: ``HILO_PUBLIC_URL`` + path in tests."""
        return f"{self.api.base_url}/webhooks/sms/{self.id}"

    @property
    def proxied_url(self) -> str:
        return f"https://{PROXY_HOST}/webhooks/sms/{self.id}"

    def inbound(self, sender: str, text: str, *, sid: str | None = None) -> dict[str, str]:
        params = webhook("sms_inbound")
        sid = sid or new_sid()
        params.update(
            MessageSid=sid,
            SmsSid=sid,
            SmsMessageSid=sid,
            AccountSid=self.account_sid,
            From=sender,
            To=self.phone_number,
            Body=text,
        )
        return params

    def status(self, sid: str, status: str, **extra: str) -> dict[str, str]:
        params = webhook("status_callback_delivered")
        params.pop("RawDlrDoneDate")
        params.update(
            MessageSid=sid,
            SmsSid=sid,
            MessageStatus=status,
            SmsStatus=status,
            AccountSid=self.account_sid,
            From=self.phone_number,
            **extra,
        )
        return params

    def post(
        self,
        params: dict[str, str],
        *,
        signed_url: str | None = None,
        token: str | None = None,
        sign: bool = True,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> httpx.Response:
        """POST ``params`` form-encoded, signed as Twilio signs for ``signed_url``."""
        sent = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        if sign and "X-Twilio-Signature" not in sent:
            validator = RequestValidator(token or self.auth_token)
            sent["X-Twilio-Signature"] = validator.compute_signature(signed_url or self.url, params)
        content = body if body is not None else urlencode(params).encode()
        return httpx.post(self.url, content=content, headers=sent, timeout=15)


def create_sms(api: Api, *, api_base_url: str | None = None) -> Sms:
    account_sid, auth_token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    phone_number = "+1415" + "".join(secrets.choice("0123456789") for _ in range(7))
    config = {"account_sid": account_sid, "auth_token": auth_token, "phone_number": phone_number}
    if api_base_url:
        config["api_base_url"] = api_base_url
    response = api.post("/api/v1/channels", json={"type": "sms", "name": "SMS", "config": config})
    assert response.status_code == 201, response.text
    channel = response.json()
    assert channel["provider"] == "twilio"
    assert "auth_token" not in channel["config"]
    sms = Sms(api, channel, account_sid, auth_token, phone_number)
    assert channel["webhook_url"] == sms.url
    return sms


def customer_writes(sms: Sms, phone: str, text: str = "Hola") -> dict[str, Any]:
    """A text from ``phone`` has landed: its timeline item."""
    params = sms.inbound(phone, text)
    assert twiml_ok(sms.post(params))
    return landed(sms.api, params["MessageSid"])[1]


def message_row(api: Api, conversation_id: str, message_id: str) -> dict[str, Any]:
    items = api.get(f"/api/v1/conversations/{conversation_id}/messages").json()["items"]
    row: dict[str, Any] = next(i for i in items if i["id"] == message_id)
    return row


def reply_and_wait_sent(sms: Sms, conversation_id: str, text: str) -> dict[str, Any]:
    reply = sms.api.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": text})
    assert reply.status_code == 202, reply.text

    def sent() -> dict[str, Any] | None:
        row = message_row(sms.api, conversation_id, reply.json()["id"])
        return row if row["status"] != "queued" else None

    message: dict[str, Any] = wait_for(sent, timeout=15, message="reply leaves the queue")
    return message


@dataclass
class FakeTwilio:
    """A local server playing Twilio's ``/2010-04-01/Accounts/{AC}/Messages.json``.

    ``answers`` are (status, JSON, headers) used in turn; once used up, every send is
    accepted with a fresh sid, as Twilio answers: 201 and ``status: queued``.
    """

    answers: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    sids: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeTwilio:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                fake.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "form": parse_qs(body, keep_blank_values=True),
                    }
                )
                if fake.answers:
                    status, answer, headers = fake.answers.pop(0)
                else:
                    sid = new_sid()
                    fake.sids.append(sid)
                    answer = {**load("messages_api.json")["created"], "sid": sid}
                    status, headers = 201, {}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def twilio_api() -> Any:
    fake = FakeTwilio().start()
    yield fake
    fake.stop()


# -- set-up and signatures (no server) -------------------------------------------------------


def test_sms_signature_matches_twilio_vectors() -> None:
    vector = load("twilio_x_twilio_signature.json")
    token, params = vector["auth_token"], vector["params"]
    assert (
        signature(token, vector["uri"], list(params.items()))
        == (vector["expected_X-Twilio-Signature"])
    )
    repeated = [tuple(pair) for pair in vector["duplicate_params_multidict"]]
    assert signature(token, vector["uri"], repeated) == vector["duplicate_expected"]
    assert (
        signature(token, vector["http_uri_with_port"], list(params.items()))
        == (vector["http_uri_with_port_expected"])
    )
    # Every constructed webhook body, signed by Twilio's validator, is verified by ours.
    context = ChannelContext(
        id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        type="sms",
        provider="twilio",
        config={},
        secrets={"auth_token": token},
    )
    url = "https://hilo.example.com/webhooks/sms/x?tenant=1"
    adapter = SmsChannel()
    for name, body in load("webhook_params.json")["bodies"].items():
        params = load("webhook_params.json")["params"][name]
        given = RequestValidator(token).compute_signature(url, params)

        def request(at: str, body: str = body, given: str = given) -> RawRequest:
            return RawRequest(
                body=body.encode(),
                headers={"x-twilio-signature": given},
                query={},
                url=at,
                received_at=datetime.now(UTC),
            )

        adapter.verify(request(url), context)
        adapter.verify(request(url.replace(".com/", ".com:443/")), context)
        with pytest.raises(InvalidSignature):
            adapter.verify(request(url.replace("tenant=1", "tenant=2")), context)


def test_sms_malformed_webhooks_are_invalid_payload() -> None:
    adapter = SmsChannel()
    context = ChannelContext(
        id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        type="sms",
        provider="twilio",
        config={"account_sid": "AC" + "0" * 32, "phone_number": "+15005550006"},
        secrets={"auth_token": "t"},
    )

    def parse(body: str) -> list[Any]:
        raw = RawRequest(
            body=body.encode(), headers={}, query={}, url="", received_at=datetime.now(UTC)
        )
        return adapter.parse_inbound(raw, context)

    for body in ("", "From=%2B14155550100&Body=hi", "MessageSid=SM1&Body=hi", "{not a form"):
        with pytest.raises(InvalidPayload):
            parse(body)
    with pytest.raises(InvalidPayload):
        parse("MessageSid=MM1&From=%2B14155550100&Body=&NumMedia=2&MediaUrl0=https%3A%2F%2Fx")
    [queued] = parse("MessageSid=SM2&MessageStatus=queued")
    assert (queued.kind, queued.provider_event_id) == ("unsupported", "SM2:queued")
    [short_code] = parse("MessageSid=SM3&From=12345&Body=Your+code")
    assert short_code.kind == "unsupported"


def test_sms_channel_config_is_checked(api: Api) -> None:
    response = api.post(
        "/api/v1/channels",
        json={
            "type": "sms",
            "name": "SMS",
            "config": {"account_sid": "AC12", "phone_number": "555-0100", "api_base_url": "ftp:x"},
        },
    )
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    for name in ("account_sid", "auth_token", "phone_number", "api_base_url"):
        assert name in message


# -- customers' messages ---------------------------------------------------------------------


def test_sms_inbound_lands_in_contact_timeline_with_verified_phone(api: Api) -> None:
    sms = create_sms(api)
    phone = new_phone()
    words = f"Hola, ¿tenéis cita el martes? {uuid.uuid4().hex}"
    params = sms.inbound(phone, words)
    response = sms.post(params)
    assert twiml_ok(response), (response.status_code, response.text)
    contact, item = landed(api, params["MessageSid"])
    assert item["text"] == words
    assert item["kind"] == "inbound"
    assert item["channel_id"] == sms.id
    identities = [(i["kind"], i["value"], i["verified"]) for i in contact["identities"]]
    assert identities == [("phone", phone, True)]
    # Message text never reaches the logs at info level.
    assert words not in api.server.logs()


def test_sms_signature_via_public_url_is_accepted(api: Api) -> None:
    sms = create_sms(api)
    params = sms.inbound(new_phone(), "Por la URL pública")
    # Signed for the proxy's URL but sent straight: not the URL Twilio called.
    assert sms.post(params, signed_url=sms.proxied_url).status_code == 401
    response = sms.post(params, signed_url=sms.url)
    assert twiml_ok(response), (response.status_code, response.text)
    landed(api, params["MessageSid"])


def test_sms_signature_via_forwarded_headers_is_accepted(api: Api) -> None:
    sms = create_sms(api)
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": PROXY_HOST}
    params = sms.inbound(new_phone(), "A través del proxy")
    # Through the proxy, the server's own public URL is not what Twilio signed.
    assert sms.post(params, signed_url=sms.url, headers=proxy).status_code == 401
    response = sms.post(params, signed_url=sms.proxied_url, headers=proxy)
    assert twiml_ok(response), (response.status_code, response.text)
    landed(api, params["MessageSid"])
    # Twilio's console may spell the default port; that signature holds too.
    with_port = sms.inbound(new_phone(), "Con :443")
    signed = f"https://{PROXY_HOST}:443/webhooks/sms/{sms.id}"
    assert twiml_ok(sms.post(with_port, signed_url=signed, headers=proxy))
    landed(api, with_port["MessageSid"])


def test_sms_forged_signature_stores_nothing(api: Api) -> None:
    sms = create_sms(api)
    params = sms.inbound(new_phone(), "Texto original")
    other_channel = sms.url.replace(sms.id, str(uuid.uuid4()))
    for response in (
        sms.post(params, token=secrets.token_hex(16)),
        sms.post(params, signed_url=other_channel),
        sms.post(params, sign=False),
        sms.post(params, headers={"X-Twilio-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_signature"
    # The signature covers every parameter: a changed Body, or an added one, fails.
    signed = sms.inbound(params["From"], "Texto original", sid=params["MessageSid"])
    tampered = urlencode({**signed, "Body": "Texto cambiado"}).encode()
    assert sms.post(signed, body=tampered).status_code == 401
    extra = urlencode({**signed, "NumMedia": "1", "MediaUrl0": "https://evil.test/x"}).encode()
    assert sms.post(signed, body=extra).status_code == 401
    time.sleep(0.3)
    assert api.get("/api/v1/contacts").json()["items"] == []
    assert inbound_events(api.server, sms.id) == []


def test_sms_retry_does_not_duplicate(api: Api) -> None:
    sms = create_sms(api)
    params = sms.inbound(new_phone(), "¿Me llamáis?")
    retry = {"I-Twilio-Idempotency-Token": str(uuid.uuid4())}
    assert twiml_ok(sms.post(params))
    assert twiml_ok(sms.post(params, headers=retry))
    contact, _item = landed(api, params["MessageSid"])
    assert twiml_ok(sms.post(params, headers=retry))
    time.sleep(0.3)
    assert [i["provider_message_id"] for i in timeline(api, contact["id"])] == [
        params["MessageSid"]
    ]
    assert [r["provider_event_id"] for r in inbound_events(api.server, sms.id)] == [
        params["MessageSid"]
    ]


def test_sms_mms_keeps_media_metadata(api: Api) -> None:
    sms = create_sms(api)
    sid = new_sid("MM")
    media = [new_sid("ME"), new_sid("ME")]
    base = f"https://api.twilio.com/2010-04-01/Accounts/{sms.account_sid}/Messages/{sid}/Media"
    params = webhook("mms_inbound")
    params.update(
        MessageSid=sid,
        SmsSid=sid,
        SmsMessageSid=sid,
        AccountSid=sms.account_sid,
        From=new_phone(),
        To=sms.phone_number,
        NumMedia="2",
        MediaUrl0=f"{base}/{media[0]}",
        MediaUrl1=f"{base}/{media[1]}",
        MediaContentType1="application/pdf",
    )
    assert twiml_ok(sms.post(params))
    _contact, item = landed(api, sid)
    assert item["text"] == "photo attached"
    assert item["attachments"] == [
        {
            "type": "image",
            "url": f"{base}/{media[0]}",
            "mime_type": "image/jpeg",
            "media_id": media[0],
        },
        {
            "type": "document",
            "url": f"{base}/{media[1]}",
            "mime_type": "application/pdf",
            "media_id": media[1],
        },
    ]


def test_sms_same_phone_as_whatsapp_is_one_contact_one_conversation(api: Api) -> None:
    wa_response = api.post(
        "/api/v1/channels",
        json={
            "type": "whatsapp",
            "name": "WhatsApp",
            "config": {
                "phone_number_id": (number_id := str(secrets.randbelow(10**14) + 10**14)),
                "app_secret": (app_secret := secrets.token_hex(16)),
                "access_token": "EAAG" + secrets.token_urlsafe(32),
            },
        },
    )
    assert wa_response.status_code == 201, wa_response.text
    wa_channel = wa_response.json()
    phone = new_phone()
    wamid = "wamid." + secrets.token_urlsafe(24)
    wa_body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550783881",
                                    "phone_number_id": number_id,
                                },
                                "contacts": [
                                    {"profile": {"name": "Lucía"}, "wa_id": phone.lstrip("+")}
                                ],
                                "messages": [
                                    {
                                        "from": phone.lstrip("+"),
                                        "id": wamid,
                                        "timestamp": str(int(time.time())),
                                        "type": "text",
                                        "text": {"body": "Hola por WhatsApp"},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        },
        separators=(",", ":"),
    ).encode()
    sent = httpx.post(
        f"{api.base_url}/webhooks/whatsapp/{wa_channel['id']}",
        content=wa_body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": whatsapp.sign(app_secret, wa_body),
        },
        timeout=15,
    )
    assert sent.status_code == 200, sent.text
    contact, first = landed(api, wamid)

    sms = create_sms(api)
    item = customer_writes(sms, phone, "Y ahora por SMS")
    contacts = api.get("/api/v1/contacts").json()["items"]
    assert [c["id"] for c in contacts] == [contact["id"]]
    items = timeline(api, contact["id"])
    assert [i["text"] for i in items] == ["Hola por WhatsApp", "Y ahora por SMS"]
    assert [i["channel_id"] for i in items] == [wa_channel["id"], sms.id]
    assert item["conversation_id"] == first["conversation_id"]
    trail = api.get(f"/api/v1/conversations/{item['conversation_id']}/events").json()["items"]
    [switch] = [e for e in trail if e["type"] == "conversation.channel_switched"]
    assert switch["channel_id"] == sms.id
    assert switch["data"]["from_channel_id"] == wa_channel["id"]
    identities = {(i["kind"], i["value"], i["verified"]) for i in contacts[0]["identities"]}
    assert ("phone", phone, True) in identities


# -- replies and receipts --------------------------------------------------------------------


def test_sms_reply_goes_through_messages_api_with_idempotency_token(
    api: Api, twilio_api: FakeTwilio
) -> None:
    sms = create_sms(api, api_base_url=twilio_api.base_url)
    phone = new_phone()
    item = customer_writes(sms, phone)
    text = "Sí, a las 10:00. ¡Hasta el martes!"
    reply = reply_and_wait_sent(sms, item["conversation_id"], text)
    assert reply["status"] == "sent", reply
    [request] = twilio_api.requests
    assert request["path"] == f"/2010-04-01/Accounts/{sms.account_sid}/Messages.json"
    credentials = base64.b64encode(f"{sms.account_sid}:{sms.auth_token}".encode()).decode()
    assert request["headers"]["authorization"] == f"Basic {credentials}"
    assert request["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert request["headers"]["i-twilio-idempotency-token"] == reply["id"]
    assert request["form"] == {
        "To": [phone],
        "From": [sms.phone_number],
        "Body": [text],
        "StatusCallback": [sms.url],
    }
    assert reply["provider_message_id"] == twilio_api.sids[0]


def test_sms_api_errors_say_whether_to_retry(twilio_api: FakeTwilio) -> None:
    adapter = SmsChannel()
    context = ChannelContext(
        id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        type="sms",
        provider="twilio",
        config={
            "account_sid": "AC" + "0" * 32,
            "phone_number": "+15005550006",
            "api_base_url": twilio_api.base_url,
        },
        secrets={"auth_token": "token"},
    )
    answers = load("messages_api.json")
    twilio_api.answers = [
        (400, answers["error_invalid_to"], {}),
        (429, answers["error_too_many_requests"], {"Retry-After": "7"}),
        (503, {"message": "Service Unavailable"}, {}),
        (201, {"status": "queued"}, {}),
    ]

    def send(text: str = "Hola", recipient: str = "+14155550100") -> SendError:
        message = OutboundMessage(
            message_id=uuid.uuid4(),
            conversation_id=uuid.uuid4(),
            recipient=recipient,
            text=text,
            created_at=datetime.now(UTC),
        )

        async def go() -> None:
            async with httpx.AsyncClient() as client:
                await adapter.send(client, context, message)

        with pytest.raises(SendError) as caught:
            asyncio.run(go())
        return caught.value

    invalid_to = send()
    assert invalid_to.retryable is False
    assert "21211" in str(invalid_to) and "Invalid 'To' Phone Number" in str(invalid_to)
    assert invalid_to.provider_error["code"] == 21211
    throttled = send()
    assert (throttled.retryable, throttled.retry_after) == (True, 7.0)
    assert send().retryable is True
    assert send().retryable is False  # accepted without a sid: retrying could send twice
    too_long = send("x" * 1601)
    assert too_long.retryable is False and "1600" in str(too_long)
    assert send(recipient="shop-7").retryable is False
    assert len(twilio_api.requests) == 4
    twilio_api.stop()
    assert send().retryable is True


def test_sms_status_callbacks_advance_only_forward(api: Api, twilio_api: FakeTwilio) -> None:
    sms = create_sms(api, api_base_url=twilio_api.base_url)
    item = customer_writes(sms, new_phone())
    conversation_id = item["conversation_id"]
    reply = reply_and_wait_sent(sms, conversation_id, "Tu pedido sale hoy.")
    sid = reply["provider_message_id"]

    queued = sms.post(sms.status(sid, "queued"))
    assert twiml_ok(queued), queued.text
    wait_for(lambda: processed(api.server, sms.id, f"{sid}:queued"))
    assert message_row(api, conversation_id, reply["id"])["status"] == "sent"
    assert twiml_ok(sms.post(sms.status(sid, "delivered")))
    wait_for(lambda: message_row(api, conversation_id, reply["id"])["status"] == "delivered")
    # A late "sent" arrives after "delivered": the message does not go back.
    assert twiml_ok(sms.post(sms.status(sid, "sent")))
    wait_for(lambda: processed(api.server, sms.id, f"{sid}:sent"))
    assert message_row(api, conversation_id, reply["id"])["status"] == "delivered"
    trail = api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
    types = [e["type"] for e in trail if e["message_id"] == reply["id"]]
    assert types.count("message.sent") == 1 and "message.delivered" in types


def test_sms_undelivered_status_records_error(api: Api, twilio_api: FakeTwilio) -> None:
    sms = create_sms(api, api_base_url=twilio_api.base_url)
    item = customer_writes(sms, new_phone())
    conversation_id = item["conversation_id"]
    reply = reply_and_wait_sent(sms, conversation_id, "¿Nos confirmas la dirección?")
    sid = reply["provider_message_id"]
    callback = sms.status(sid, "undelivered", ErrorCode="30003")
    assert twiml_ok(sms.post(callback))

    def failed() -> dict[str, Any] | None:
        row = message_row(api, conversation_id, reply["id"])
        return row if row["status"] == "failed" else None

    row = wait_for(failed)
    assert "30003" in row["error"] and "Unreachable destination handset" in row["error"]
    trail = api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
    [event] = [e for e in trail if e["type"] == "message.failed"]
    assert "30003" in event["data"]["error"]


# -- every other fixture case ----------------------------------------------------------------


def test_sms_webhook_is_answered_with_empty_twiml(api: Api) -> None:
    sms = create_sms(api)
    params = sms.inbound(new_phone(), "¿Abrís el domingo?")
    response = sms.post(params)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    # "<Response/>": Twilio sends nothing back to the customer on Hilo's behalf.
    fixture = (FIXTURES / "messaging_response_empty.xml").read_text()
    assert response.text.strip() == fixture.rpartition("?>")[2].strip() == "<Response/>"
    landed(api, params["MessageSid"])


def test_sms_whatsapp_sender_on_the_sms_number_is_stored_not_a_contact(api: Api) -> None:
    sms = create_sms(api)
    params = webhook("whatsapp_inbound")
    sid = new_sid()
    params.update(MessageSid=sid, SmsSid=sid, SmsMessageSid=sid, AccountSid=sms.account_sid)
    assert twiml_ok(sms.post(params))
    row = wait_for(lambda: processed(api.server, sms.id, sid), message="stored and processed")
    assert row["status"] == "unsupported"
    assert row["item"]["data"]["from"] == "whatsapp:+14155550100"
    # "whatsapp:+…" is not a number to text back: no contact, no conversation.
    assert api.get("/api/v1/contacts").json()["items"] == []


def test_sms_read_callback_marks_the_reply_read(api: Api, twilio_api: FakeTwilio) -> None:
    sms = create_sms(api, api_base_url=twilio_api.base_url)
    item = customer_writes(sms, new_phone())
    conversation_id = item["conversation_id"]
    reply = reply_and_wait_sent(sms, conversation_id, "Llegamos en 20 minutos.")
    sid = reply["provider_message_id"]
    params = webhook("whatsapp_status_read")
    params.update(MessageSid=sid, SmsSid=sid, AccountSid=sms.account_sid)
    assert twiml_ok(sms.post(params))
    wait_for(lambda: message_row(api, conversation_id, reply["id"])["status"] == "read")
    # "delivered" arriving after "read" leaves it read.
    assert twiml_ok(sms.post(sms.status(sid, "delivered")))
    wait_for(lambda: processed(api.server, sms.id, f"{sid}:delivered"))
    assert message_row(api, conversation_id, reply["id"])["status"] == "read"


def test_sms_unsubscribed_recipient_fails_the_reply_with_twilio_error(
    api: Api, twilio_api: FakeTwilio
) -> None:
    sms = create_sms(api, api_base_url=twilio_api.base_url)
    item = customer_writes(sms, new_phone())
    twilio_api.answers = [(400, load("messages_api.json")["error_unsubscribed"], {})]
    reply = reply_and_wait_sent(sms, item["conversation_id"], "¿Seguimos?")
    assert reply["status"] == "failed"
    assert "(#21610) Attempt to send to unsubscribed recipient" in reply["error"]
    assert len(twilio_api.requests) == 1  # a refusal is not retried


def test_sms_rate_limited_send_is_retried_after_retry_after_with_the_same_token(
    api: Api, twilio_api: FakeTwilio
) -> None:
    sms = create_sms(api, api_base_url=twilio_api.base_url)
    item = customer_writes(sms, new_phone())
    conversation_id = item["conversation_id"]
    throttled = load("messages_api.json")["error_too_many_requests"]
    twilio_api.answers = [(429, throttled, {"Retry-After": "1"})]
    # The reply stays queued while Twilio asks to wait, then goes out.
    row = reply_and_wait_sent(sms, conversation_id, "Vamos para allá")
    assert row["status"] == "sent", row
    first, second = twilio_api.requests
    assert first["form"] == second["form"]
    tokens = {r["headers"]["i-twilio-idempotency-token"] for r in (first, second)}
    assert tokens == {row["id"]}
    assert row["provider_message_id"] == twilio_api.sids[0]
    assert row["error"] is None


# -- opt-out keywords ------------------------------------------------------------------------


def system_replies(api: Api, conversation_id: str) -> list[dict[str, Any]]:
    """Hilo's own confirmations in the conversation, once they have left the queue."""
    items = api.get(f"/api/v1/conversations/{conversation_id}/messages").json()["items"]
    return [i for i in items if i["sender_type"] == "system" and i["status"] != "queued"]


@pytest.mark.parametrize("word", ["BAJA", "cancelar"])
def test_sms_stop_word_opts_out_at_once_confirms_and_refuses_later_replies(
    api: Api, twilio_api: FakeTwilio, word: str
) -> None:
    sms = create_sms(api, api_base_url=twilio_api.base_url)
    phone = new_phone()
    item = customer_writes(sms, phone, word)
    conversation_id = item["conversation_id"]
    [confirmation] = wait_for(lambda: system_replies(api, conversation_id))
    assert confirmation["status"] == "sent"
    [request] = twilio_api.requests
    assert request["form"]["To"] == [phone]
    assert "ALTA" in request["form"]["Body"][0]
    refused = api.post(
        f"/api/v1/conversations/{conversation_id}/messages", json={"text": "¿Sigue ahí?"}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "contact_opted_out"
    trail = api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
    assert "contact.opted_out" in [e["type"] for e in trail]
    assert len(twilio_api.requests) == 1


@pytest.mark.parametrize("word", ["STOP", "cancel", "Quit"])
def test_sms_twilio_stop_word_opts_out_without_a_confirmation_twilio_would_block(
    api: Api, twilio_api: FakeTwilio, word: str
) -> None:
    # Twilio answers its own keywords and refuses any later send (error 21610): Hilo records
    # the choice and refuses replies itself, and sends nothing Twilio would block.
    sms = create_sms(api, api_base_url=twilio_api.base_url)
    conversation_id = customer_writes(sms, new_phone(), word)["conversation_id"]
    trail = wait_for(
        lambda: [
            e
            for e in api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
            if e["type"] == "contact.opted_out"
        ]
    )
    assert len(trail) == 1
    refused = api.post(
        f"/api/v1/conversations/{conversation_id}/messages", json={"text": "¿Sigue ahí?"}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "contact_opted_out"
    messages = api.get(f"/api/v1/conversations/{conversation_id}/messages").json()["items"]
    assert [m["sender_type"] for m in messages if m["sender_type"] == "system"] == []
    assert twilio_api.requests == []


@pytest.mark.parametrize("word", ["ALTA", "Alta"])
def test_sms_start_word_opts_back_in(api: Api, twilio_api: FakeTwilio, word: str) -> None:
    sms = create_sms(api, api_base_url=twilio_api.base_url)
    phone = new_phone()
    conversation_id = customer_writes(sms, phone, "BAJA")["conversation_id"]
    wait_for(lambda: system_replies(api, conversation_id))
    customer_writes(sms, phone, word)
    wait_for(lambda: len(system_replies(api, conversation_id)) == 2)
    assert "Vuelves a estar suscrito" in twilio_api.requests[1]["form"]["Body"][0]
    again = reply_and_wait_sent(sms, conversation_id, "Bienvenido de nuevo")
    assert again["status"] == "sent"
    assert twilio_api.requests[2]["form"]["Body"] == ["Bienvenido de nuevo"]


def test_a_burst_of_texts_lands_each_once_in_order_beside_an_early_receipt(api: Api) -> None:
    """The worker takes queued deliveries in batches: they land as if taken one by one.

    Four customers text in quick turns, and a receipt for a reply Hilo has no record of (it
    will wait and retry) arrives among them: every text lands once, each customer is one
    contact with one conversation, and their texts read in the order they were sent.
    """
    sms = create_sms(api)
    phones = [new_phone() for _ in range(4)]
    sent = [sms.inbound(phones[i % 4], f"Mensaje {i} {uuid.uuid4().hex[:6]}") for i in range(40)]
    early = sms.status(new_sid(), "delivered")
    for params in [*sent[:20], early, *sent[20:]]:
        assert twiml_ok(sms.post(params))
    contacts = {landed(api, params["MessageSid"])[0]["id"] for params in sent}
    assert len(contacts) == 4
    by_phone: dict[str, list[str]] = {}
    for contact_id in contacts:
        items = timeline(api, contact_id)
        assert len({item["conversation_id"] for item in items}) == 1
        phone = api.get(f"/api/v1/contacts/{contact_id}").json()["identities"][0]["value"]
        by_phone[phone] = [item["text"] for item in items]
    for phone in phones:
        assert by_phone[phone] == [p["Body"] for p in sent if p["From"] == phone]
    assert (
        len([r for r in inbound_events(api.server, sms.id) if r["item"]["kind"] == "message"]) == 40
    )
