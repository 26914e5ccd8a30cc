"""The WhatsApp channel through Twilio, end to end, over real HTTP, on SQLite and PostgreSQL.

Webhook bodies are Twilio's form parameters (``tests/fixtures/twilio/webhook_params.json``:
``whatsapp_inbound``, ``whatsapp_status_read``) with fresh sids and numbers per test, signed
with the ``twilio`` package's own ``RequestValidator`` for the URL Twilio would have called.
A local HTTP server plays Twilio: its Messages API and its media URLs (which redirect to a
media store, as Twilio's do).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from twilio.request_validator import RequestValidator

from hilo.channels.base import ChannelContext, RawRequest
from hilo.channels.whatsapp import WhatsAppChannel
from hilo.clock import now
from tests.channels.test_sms import PROXY_HOST, Sms, new_sid, twiml_ok, webhook
from tests.channels.test_sms import load as load_twilio
from tests.channels.test_whatsapp import (
    attachments_settled,
    create_whatsapp,
    customer_writes,
    find_message,
    inbound_events,
    landed,
    message_row,
    new_wa_id,
    other_workspace,
    processed,
    send_and_wait,
    timeline,
    upload,
)
from tests.conftest import Api, Server, wait_for
from tests.helpers import Answer, Call, LocalApi, json_answer

CONTENT_SID = "HX" + "0123456789abcdef" * 2


class FakeTwilio(LocalApi):
    """Twilio's Messages API, and its media URLs, redirecting to a media store elsewhere.

    Media asked with the account's credentials is redirected to ``store`` (another origin,
    as Twilio's is); the store refuses any request that carries credentials.
    """

    def __init__(self) -> None:
        super().__init__(self.answer)
        self.answers: list[Answer] = []
        self.sids: list[str] = []
        self.files: dict[str, tuple[bytes, str]] = {}
        self.credentials = ""
        self.store = LocalApi(self.stored)

    def start(self) -> FakeTwilio:
        self.store.start()
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        self.store.stop()

    @property
    def sends(self) -> list[Call]:
        return [c for c in self.calls if c.method == "POST"]

    def form(self, call: Call) -> dict[str, list[str]]:
        return parse_qs(call.body.decode(), keep_blank_values=True)

    def answer(self, call: Call) -> Answer:
        if call.method == "POST":
            if self.answers:
                return self.answers.pop(0)
            sid = new_sid()
            self.sids.append(sid)
            return json_answer(201, {**load_twilio("messages_api.json")["created"], "sid": sid})
        if call.headers.get("authorization") != f"Basic {self.credentials}":
            return json_answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
        media = urlsplit(call.path).path.rpartition("/")[2]
        return 307, {"Location": f"{self.store.origin}/store/{media}"}, b""

    def stored(self, call: Call) -> Answer:
        if "authorization" in call.headers:
            return 400, {}, b"credentials sent to the media store"
        content, mime_type = self.files[urlsplit(call.path).path.rpartition("/")[2]]
        return 200, {"Content-Type": mime_type}, content


@pytest.fixture
def twilio() -> Any:
    fake = FakeTwilio().start()
    yield fake
    fake.stop()


class TwilioNumber(Sms):
    """A WhatsApp channel through Twilio, and what Twilio would know of it."""

    @property
    def url(self) -> str:
        return f"{self.api.base_url}/webhooks/whatsapp/{self.id}"

    @property
    def proxied_url(self) -> str:
        return f"https://{PROXY_HOST}/webhooks/whatsapp/{self.id}"

    def inbound(self, wa_id: str, text: str = "Hola por WhatsApp", **extra: str) -> dict[str, str]:
        params = webhook("whatsapp_inbound")
        sid = new_sid()
        params.update(
            MessageSid=sid,
            SmsSid=sid,
            SmsMessageSid=sid,
            AccountSid=self.account_sid,
            From=f"whatsapp:+{wa_id}",
            WaId=wa_id,
            To=f"whatsapp:{self.phone_number}",
            Body=text,
            **extra,
        )
        return params

    def status(self, sid: str, status: str, wa_id: str = "", **extra: str) -> dict[str, str]:
        params = webhook("whatsapp_status_read")
        params.update(
            MessageSid=sid,
            SmsSid=sid,
            MessageStatus=status,
            SmsStatus=status,
            AccountSid=self.account_sid,
            From=f"whatsapp:{self.phone_number}",
            To=f"whatsapp:+{wa_id}",
            ChannelToAddress=f"+{wa_id}",
            **extra,
        )
        return params

    def writes(self, wa_id: str, text: str = "Hola") -> dict[str, Any]:
        """A message from ``wa_id`` has landed: its timeline item."""
        params = self.inbound(wa_id, text)
        assert twiml_ok(self.post(params))
        return landed(self.api, params["MessageSid"])[1]


def create_twilio_whatsapp(
    api: Api, *, api_base_url: str | None = None, templates: list[dict[str, Any]] | None = None
) -> TwilioNumber:
    account_sid, auth_token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    number = "+1415" + "".join(secrets.choice("0123456789") for _ in range(7))
    config: dict[str, Any] = {
        "account_sid": account_sid,
        "auth_token": auth_token,
        # As Twilio's console shows the sender.
        "phone_number": f"whatsapp:{number}",
    }
    if api_base_url:
        config["api_base_url"] = api_base_url
    if templates is not None:
        config["templates"] = templates
    response = api.post(
        "/api/v1/channels",
        json={"type": "whatsapp", "provider": "twilio", "name": "WhatsApp", "config": config},
    )
    assert response.status_code == 201, response.text
    channel = response.json()
    assert channel["provider"] == "twilio"
    assert channel["config"]["phone_number"] == number
    assert "auth_token" not in channel["config"]
    return TwilioNumber(api, channel, account_sid, auth_token, number)


def twilio_credentials(number: TwilioNumber) -> str:
    return base64.b64encode(f"{number.account_sid}:{number.auth_token}".encode()).decode()


TEMPLATES = [
    {
        "name": "recordatorio_cita",
        "language": "es",
        "body": "Hola {{1}}, te recordamos tu cita del {{2}}.",
        "content_sid": CONTENT_SID,
    }
]


def backdate_inbound(server: Server, message_id: str, hours: float) -> None:
    """The customer's message was written ``hours`` ago (Twilio sends no timestamp)."""
    from hilo.db import Database
    from hilo.models import Message

    async def go() -> None:
        db = Database(server.db_url, pool_size=1)
        try:
            async with db.transaction() as session:
                row = await session.get_one(Message, uuid.UUID(message_id))
                row.created_at = now() - timedelta(hours=hours)
        finally:
            await db.dispose()

    asyncio.run(go())


# -- set-up and signatures -----------------------------------------------------------------------


def test_whatsapp_twilio_channel_config_is_checked(api: Api) -> None:
    response = api.post(
        "/api/v1/channels",
        json={
            "type": "whatsapp",
            "provider": "twilio",
            "name": "WA",
            "config": {"account_sid": "AC123", "phone_number": "whatsapp:12345"},
        },
    )
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    for name in ("account_sid", "auth_token", "phone_number"):
        assert f"config.{name}" in message
    no_content_sid = api.post(
        "/api/v1/channels",
        json={
            "type": "whatsapp",
            "provider": "twilio",
            "name": "WA",
            "config": {
                "account_sid": "AC" + "0" * 32,
                "auth_token": "t",
                "phone_number": "+14155238886",
                "templates": [{"name": "hola", "language": "es", "body": "Hola"}],
            },
        },
    )
    assert no_content_sid.status_code == 422
    assert "config.templates[0]" in no_content_sid.json()["error"]["message"]


def test_whatsapp_twilio_fixtures_parse_as_twilio_sends_them() -> None:
    adapter = WhatsAppChannel()
    context = ChannelContext(
        id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        type="whatsapp",
        provider="twilio",
        config={"account_sid": "AC" + "0" * 32, "phone_number": "+14155238886"},
        secrets={"auth_token": "12345"},
    )
    url = "https://hilo.example.com/webhooks/whatsapp/x"
    validator = RequestValidator("12345")
    bodies = load_twilio("webhook_params.json")["bodies"]
    for name in ("whatsapp_inbound", "whatsapp_status_read"):
        params = webhook(name)
        request = RawRequest(
            body=bodies[name].encode(),
            headers={"x-twilio-signature": validator.compute_signature(url, params)},
            query={},
            url=url,
            received_at=now(),
        )
        adapter.verify(request, context)
        [item] = adapter.parse_inbound(request, context)
        assert item.answer == "<Response/>"
        if name == "whatsapp_inbound":
            assert (item.kind, item.text) == ("message", "Hi on WhatsApp")
            assert item.sender is not None
            assert (item.sender.external_id, item.sender.phone, item.sender.name) == (
                "14155550100",
                "+14155550100",
                "Jane",
            )
        else:
            assert (item.kind, item.data["status"]) == ("status", "read")


def test_whatsapp_twilio_forged_signature_stores_nothing(api: Api) -> None:
    number = create_twilio_whatsapp(api)
    params = number.inbound(new_wa_id())
    assert number.post(params, token="not-the-token").status_code == 401
    assert number.post(params, signed_url=number.url + "?x=1").status_code == 401
    unsigned = number.post(params, sign=False)
    assert unsigned.status_code == 401
    time.sleep(0.3)
    assert inbound_events(api.server, number.id) == []
    assert api.get("/api/v1/contacts").json()["items"] == []


def test_whatsapp_twilio_signature_via_forwarded_headers_is_accepted(api: Api) -> None:
    number = create_twilio_whatsapp(api)
    params = number.inbound(new_wa_id())
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": PROXY_HOST}
    assert number.post(params, signed_url=number.proxied_url).status_code == 401
    assert twiml_ok(number.post(params, signed_url=number.proxied_url, headers=proxy))
    landed(api, params["MessageSid"])


# -- customers' messages ---------------------------------------------------------------------


def test_whatsapp_twilio_message_lands_with_whatsapp_id_and_verified_phone(api: Api) -> None:
    number = create_twilio_whatsapp(api)
    wa_id = new_wa_id()
    params = number.inbound(wa_id, "¿Tenéis hora el jueves?", ProfileName="Lucía")
    response = number.post(params)
    assert twiml_ok(response), response.text
    assert "xml" in response.headers["content-type"]
    contact, item = landed(api, params["MessageSid"])
    assert (item["text"], item["channel_id"]) == ("¿Tenéis hora el jueves?", number.id)
    assert contact["name"] == "Lucía"
    identities = {(i["kind"], i["value"], i["verified"]) for i in contact["identities"]}
    assert ("whatsapp", wa_id, True) in identities
    assert ("phone", f"+{wa_id}", True) in identities


def test_whatsapp_twilio_retry_does_not_duplicate(api: Api) -> None:
    number = create_twilio_whatsapp(api)
    params = number.inbound(new_wa_id())
    assert twiml_ok(number.post(params))
    assert twiml_ok(number.post(params))
    contact, _item = landed(api, params["MessageSid"])
    time.sleep(0.3)
    assert len(timeline(api, contact["id"])) == 1
    assert len(inbound_events(api.server, number.id)) == 1


def test_whatsapp_customer_on_a_meta_number_and_a_twilio_number_is_one_contact(
    api: Api,
) -> None:
    meta = create_whatsapp(api)
    number = create_twilio_whatsapp(api)
    wa_id = new_wa_id()
    contact, first = customer_writes(meta, wa_id)
    later = number.writes(wa_id, "Y ahora por el otro número")
    assert [c["id"] for c in api.get("/api/v1/contacts").json()["items"]] == [contact["id"]]
    assert later["conversation_id"] == first["conversation_id"]
    assert [i["channel_id"] for i in timeline(api, contact["id"])] == [meta.id, number.id]


def test_whatsapp_twilio_sender_that_is_not_whatsapp_is_kept_as_unsupported(api: Api) -> None:
    number = create_twilio_whatsapp(api)
    params = number.inbound(new_wa_id())
    params["From"] = "+34600111222"  # a plain SMS sender on the same webhook
    assert twiml_ok(number.post(params))
    row = wait_for(lambda: processed(api.server, number.id, params["MessageSid"]))
    assert row["status"] == "unsupported"
    assert api.get("/api/v1/contacts").json()["items"] == []


def test_whatsapp_twilio_location_is_a_message_with_the_place(api: Api) -> None:
    number = create_twilio_whatsapp(api)
    params = number.inbound(
        new_wa_id(),
        "",
        MessageType="location",
        Latitude="40.4168",
        Longitude="-3.7038",
        Label="Taller Sur",
        Address="Calle Mayor 1, Madrid",
    )
    assert twiml_ok(number.post(params))
    _contact, item = landed(api, params["MessageSid"])
    assert item["text"] == "📍 40.4168,-3.7038 Taller Sur Calle Mayor 1, Madrid"
    assert item["data"]["location"]["name"] == "Taller Sur"


def test_whatsapp_twilio_quick_reply_is_a_message_with_its_payload(api: Api) -> None:
    number = create_twilio_whatsapp(api)
    replied_to = new_sid()
    params = number.inbound(
        new_wa_id(),
        "Sí, confirmo",
        MessageType="button",
        ButtonText="Sí, confirmo",
        ButtonPayload="confirm-booking-42",
        OriginalRepliedMessageSid=replied_to,
    )
    assert twiml_ok(number.post(params))
    _contact, item = landed(api, params["MessageSid"])
    assert item["text"] == "Sí, confirmo"
    assert item["data"]["payload"] == "confirm-booking-42"
    assert item["data"]["reply_to"] == replied_to


def test_whatsapp_twilio_media_is_downloaded_with_the_account_credentials(
    api: Api, twilio: FakeTwilio
) -> None:
    number = create_twilio_whatsapp(api, api_base_url=twilio.origin)
    twilio.credentials = twilio_credentials(number)
    media = new_sid("ME")
    photo = b"\xff\xd8\xff" + secrets.token_bytes(1024)
    twilio.files[media] = (photo, "image/jpeg")
    account = f"{twilio.origin}/2010-04-01/Accounts/{number.account_sid}"
    url = f"{account}/Messages/{new_sid('MM')}/Media/{media}"
    params = number.inbound(
        new_wa_id(),
        "",
        MessageType="image",
        NumMedia="1",
        MediaUrl0=url,
        MediaContentType0="image/jpeg",
    )
    assert twiml_ok(number.post(params))
    [attachment] = attachments_settled(api, params["MessageSid"])
    assert (attachment["status"], attachment["type"], attachment["size"]) == (
        "stored",
        "image",
        len(photo),
    )
    served = api.get(f"/api/v1/attachments/{attachment['attachment_id']}")
    assert served.content == photo
    # Twilio's API got the credentials; its media store, after the redirect, did not.
    [api_call], [store_call] = twilio.calls, twilio.store.calls
    assert api_call.headers["authorization"] == f"Basic {twilio.credentials}"
    assert "authorization" not in store_call.headers


def test_whatsapp_twilio_media_outside_twilio_is_not_fetched(api: Api, twilio: FakeTwilio) -> None:
    number = create_twilio_whatsapp(api, api_base_url=twilio.origin)
    elsewhere = LocalApi(lambda call: (200, {}, b"x")).start()
    try:
        params = number.inbound(
            new_wa_id(),
            "",
            NumMedia="1",
            MediaUrl0=f"{elsewhere.origin}/Media/{new_sid('ME')}",
            MediaContentType0="image/png",
        )
        assert twiml_ok(number.post(params))
        [attachment] = attachments_settled(api, params["MessageSid"])
        assert attachment["status"] == "unavailable"
        assert elsewhere.calls == []
    finally:
        elsewhere.stop()


# -- replies and receipts --------------------------------------------------------------------


def test_whatsapp_twilio_reply_goes_through_messages_api_with_whatsapp_addresses(
    api: Api, twilio: FakeTwilio
) -> None:
    number = create_twilio_whatsapp(api, api_base_url=twilio.origin)
    wa_id = new_wa_id()
    item = number.writes(wa_id)
    reply = send_and_wait(api, item["conversation_id"], text="Sí, el jueves a las 10:00.")
    assert reply["status"] == "sent"
    [call] = twilio.sends
    assert call.path == f"/2010-04-01/Accounts/{number.account_sid}/Messages.json"
    assert call.headers["authorization"] == f"Basic {twilio_credentials(number)}"
    assert call.headers["i-twilio-idempotency-token"] == reply["id"]
    assert twilio.form(call) == {
        "To": [f"whatsapp:+{wa_id}"],
        "From": [f"whatsapp:{number.phone_number}"],
        "Body": ["Sí, el jueves a las 10:00."],
        "StatusCallback": [number.url],
    }
    assert reply["provider_message_id"] == twilio.sids[0]


def test_whatsapp_twilio_status_callbacks_advance_only_forward(
    api: Api, twilio: FakeTwilio
) -> None:
    number = create_twilio_whatsapp(api, api_base_url=twilio.origin)
    wa_id = new_wa_id()
    item = number.writes(wa_id)
    reply = send_and_wait(api, item["conversation_id"], text="Tu coche está listo.")
    sid = reply["provider_message_id"]
    assert twiml_ok(number.post(number.status(sid, "read", wa_id)))
    wait_for(lambda: message_row(api, item["conversation_id"], reply["id"])["status"] == "read")
    # A late "delivered" after "read": the reply does not go back.
    assert twiml_ok(number.post(number.status(sid, "delivered", wa_id)))
    wait_for(lambda: processed(api.server, number.id, f"{sid}:delivered"))
    assert message_row(api, item["conversation_id"], reply["id"])["status"] == "read"


def test_whatsapp_twilio_undelivered_outside_the_window_records_twilios_error(
    api: Api, twilio: FakeTwilio
) -> None:
    number = create_twilio_whatsapp(api, api_base_url=twilio.origin)
    wa_id = new_wa_id()
    item = number.writes(wa_id)
    reply = send_and_wait(api, item["conversation_id"], text="¿Sigues ahí?")
    sid = reply["provider_message_id"]
    assert twiml_ok(number.post(number.status(sid, "undelivered", wa_id, ErrorCode="63016")))

    def failed() -> dict[str, Any] | None:
        row = message_row(api, item["conversation_id"], reply["id"])
        return row if row["status"] == "failed" else None

    row = wait_for(failed)
    assert "63016" in row["error"] and "template" in row["error"]


def test_whatsapp_twilio_plain_reply_outside_the_window_is_409_and_a_template_goes_out(
    api: Api, twilio: FakeTwilio
) -> None:
    number = create_twilio_whatsapp(api, api_base_url=twilio.origin, templates=TEMPLATES)
    wa_id = new_wa_id()
    item = number.writes(wa_id)
    backdate_inbound(api.server, item["id"], hours=30)
    url = f"/api/v1/conversations/{item['conversation_id']}/messages"
    refused = api.post(url, json={"text": "¿Sigues ahí?"})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "whatsapp_window_closed"
    template = {"name": "recordatorio_cita", "language": "es", "params": ["Lucía", "jueves"]}
    sent = send_and_wait(api, item["conversation_id"], template=template)
    assert sent["status"] == "sent"
    assert sent["text"] == "Hola Lucía, te recordamos tu cita del jueves."
    [call] = twilio.sends
    form = twilio.form(call)
    assert form["ContentSid"] == [CONTENT_SID]
    assert json.loads(form["ContentVariables"][0]) == {"1": "Lucía", "2": "jueves"}
    assert "Body" not in form


def test_whatsapp_twilio_reply_with_a_file_sends_its_link_as_media_url(
    api: Api, twilio: FakeTwilio
) -> None:
    number = create_twilio_whatsapp(api, api_base_url=twilio.origin)
    item = number.writes(new_wa_id())
    photo = b"\x89PNG" + secrets.token_bytes(256)
    uploaded = upload(api, photo, "image/png", "presupuesto.png")
    sent = send_and_wait(
        api, item["conversation_id"], text="El presupuesto", attachment_ids=[uploaded["id"]]
    )
    assert sent["status"] == "sent"
    form = twilio.form(twilio.sends[-1])
    assert form["Body"] == ["El presupuesto"]
    [link] = form["MediaUrl"]
    fetched = httpx.get(link)
    assert (fetched.status_code, fetched.content) == (200, photo)
    assert find_message(api, item["provider_message_id"]) is not None
    with other_workspace(api.server) as them:
        assert them.get(f"/api/v1/attachments/{uploaded['id']}").status_code == 404
