"""PRODUCT.md's car-rental story, end to end, over real HTTP, on SQLite and PostgreSQL.

A customer's car breaks down. They text the rental company (SMS through Twilio, signed as
Twilio signs), then call (Twilio Voice: the call, its status, recording and transcript), the
agent logs their call back, and the customer gets SMS updates about the tow truck (sent to a
local server playing Twilio's Messages API). One contact, one conversation. The case is
resolved; five days later the customer writes on WhatsApp from the same number (Meta Cloud
API, signed as Meta signs) and the same conversation opens again with the whole story in it.
Resolved again and past the reopen window, a new WhatsApp message starts a new conversation
in the same contact's timeline. Every message stays on the channel it came or went on.

Time passing is the resolution's timestamp moved back in the database, as in
``tests/core/test_conversations.py``; the reopen window is the default seven days.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.channels.test_sms import (
    FakeTwilio,
    create_sms,
    landed,
    message_row,
    new_phone,
    new_sid,
    timeline,
    twiml_ok,
)
from tests.channels.test_voice import call_until, create_voice, trail, twiml
from tests.channels.test_whatsapp import (
    FIXTURE_WA_ID,
    FIXTURE_WAMID,
    WhatsApp,
    case,
    create_whatsapp,
    new_wamid,
    stamped,
)
from tests.conftest import Api, wait_for
from tests.core.test_conversations import age_resolution


@pytest.fixture
def twilio_api() -> Iterator[FakeTwilio]:
    fake = FakeTwilio().start()
    yield fake
    fake.stop()


def whatsapp_from(wa: WhatsApp, phone: str, words: str) -> dict[str, Any]:
    """The customer writes ``words`` on WhatsApp from ``phone``: its timeline item."""
    wamid = new_wamid()
    payload = stamped(case("pywa_message.json", "text"))
    body = wa.body(
        payload, **{FIXTURE_WA_ID: phone.lstrip("+"), FIXTURE_WAMID: wamid, "Body Text": words}
    )
    sent = wa.post(body)
    assert sent.status_code == 200, sent.text
    return landed(wa.api, wamid)[1]


def send_sms_update(api: Api, conversation_id: str, sms_id: str, text: str) -> dict[str, Any]:
    """An agent's reply, with no channel chosen, delivered to Twilio as an SMS: its message.

    The customer's last contact was a phone call; a written reply goes on the text channel
    they used before it.
    """
    queued = api.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": text})
    assert queued.status_code == 202, queued.text
    assert queued.json()["channel_id"] == sms_id

    def sent() -> dict[str, Any] | None:
        row = message_row(api, conversation_id, queued.json()["id"])
        return row if row["status"] == "sent" else None

    message: dict[str, Any] = wait_for(sent, timeout=15, message=f"SMS {text!r} sent")
    return message


def resolve(api: Api, conversation_id: str) -> None:
    response = api.patch(f"/api/v1/conversations/{conversation_id}", json={"status": "resolved"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "resolved"


def test_car_rental_breakdown_is_one_story_across_sms_voice_and_whatsapp(
    api: Api, twilio_api: FakeTwilio
) -> None:
    sms = create_sms(api, api_base_url=twilio_api.base_url)
    voice = create_voice(api, language="es")
    wa = create_whatsapp(api)
    phone = new_phone()

    # 1. The car broke down: the customer texts the rental company.
    breakdown = sms.inbound(phone, "Hola, el coche de alquiler se ha averiado en la A-7.")
    assert twiml_ok(sms.post(breakdown))
    contact, first = landed(api, breakdown["MessageSid"])
    conversation_id = first["conversation_id"]
    asked = send_sms_update(
        api, conversation_id, sms.id, "Lo sentimos. ¿En qué punto kilométrico está?"
    )

    # 2. The customer calls; nobody is free, so the voicemail takes the message.
    call = voice.incoming(phone)
    answer = twiml(voice.post(call))
    assert [verb.tag for verb in answer] == ["Say", "Record", "Hangup"]
    recording_sid = new_sid("RE")
    words = "Estoy en la A-7, kilómetro 12, dirección Málaga. El coche no arranca."
    for params in (
        voice.completed(call),
        voice.recording(call, recording_sid),
        voice.transcription(call, recording_sid, words),
    ):
        twiml(voice.post(params))
    call_message = call_until(
        api,
        call["CallSid"],
        lambda r: r["text"] == words and r["attachments"] and r["data"]["call"].get("duration"),
        "the call with its duration, recording and transcript",
    )
    assert call_message["conversation_id"] == conversation_id
    assert call_message["data"]["call"]["status"] == "completed"

    # 3. The agent calls back and logs the call; then SMS updates about the tow truck.
    logged = api.post(
        f"/api/v1/conversations/{conversation_id}/calls",
        json={
            "direction": "outbound",
            "duration_seconds": 95,
            "outcome": "answered",
            "notes": "Grúa solicitada al km 12 de la A-7; coche de sustitución en Málaga.",
            "channel_id": voice.id,
        },
    )
    assert logged.status_code == 201, logged.text
    updates = [
        send_sms_update(api, conversation_id, sms.id, text)
        for text in (
            "La grúa llegará en unos 30 minutos.",
            "La grúa está a 5 minutos. Quédese en un lugar seguro.",
        )
    ]
    delivered = [r["form"] for r in twilio_api.requests]
    assert [(f["To"], f["From"]) for f in delivered] == [([phone], [sms.phone_number])] * 3
    assert [f["Body"][0] for f in delivered] == [asked["text"], *(u["text"] for u in updates)]
    for update in updates:
        assert twiml_ok(sms.post(sms.status(update["provider_message_id"], "delivered")))
    for update in updates:
        wait_for(
            lambda u=update: message_row(api, conversation_id, u["id"])["status"] == "delivered"
        )

    story = timeline(api, contact["id"])
    assert {i["conversation_id"] for i in story} == {conversation_id}
    assert [(i["kind"], i["channel_id"]) for i in story] == [
        ("inbound", sms.id),
        ("outbound", sms.id),
        ("inbound", voice.id),
        ("call", voice.id),
        ("outbound", sms.id),
        ("outbound", sms.id),
    ]
    resolve(api, conversation_id)

    # 4. Five days later, on WhatsApp from the same number: the same conversation reopens.
    age_resolution(api, conversation_id, days=5)
    again = whatsapp_from(wa, phone, "Hola de nuevo: ¿dónde devuelvo el coche de sustitución?")
    assert again["conversation_id"] == conversation_id
    assert again["channel_id"] == wa.id
    conversation = api.get(f"/api/v1/conversations/{conversation_id}").json()
    assert conversation["status"] == "open" and conversation["last_channel_id"] == wa.id
    # The agent sees the whole story at once: the thread holds every earlier step.
    thread = api.get(f"/api/v1/conversations/{conversation_id}/messages").json()["items"]
    assert [m["id"] for m in thread] == [*(i["id"] for i in story), again["id"]]
    assert thread[2]["text"] == words
    events = trail(api, conversation_id)
    switches = [
        (e["data"]["from_channel_id"], e["channel_id"])
        for e in events
        if e["type"] == "conversation.channel_switched"
    ]
    assert switches == [(sms.id, voice.id), (voice.id, wa.id)]
    [reopened] = [e for e in events if e["type"] == "conversation.reopened"]
    assert reopened["data"]["reason"] == "customer_replied"
    assert [e["type"] for e in events].count("call.updated") == 3
    assert [e["type"] for e in events].count("call.logged") == 1

    # 5. Resolved again; past the reopen window, the next message starts a new conversation.
    resolve(api, conversation_id)
    age_resolution(api, conversation_id, days=8)
    later = whatsapp_from(wa, phone, "Quería reservar otro coche para agosto.")
    assert later["conversation_id"] != conversation_id
    assert later["channel_id"] == wa.id
    assert api.get(f"/api/v1/conversations/{conversation_id}").json()["status"] == "resolved"

    # One customer, one timeline, every message on its own channel.
    contacts = api.get("/api/v1/contacts").json()["items"]
    assert [c["id"] for c in contacts] == [contact["id"]]
    identities = {(i["kind"], i["value"], i["verified"]) for i in contacts[0]["identities"]}
    assert ("phone", phone, True) in identities
    everything = timeline(api, contact["id"])
    assert [(i["conversation_id"], i["channel_id"]) for i in everything] == [
        *((conversation_id, i["channel_id"]) for i in story),
        (conversation_id, wa.id),
        (later["conversation_id"], wa.id),
    ]
    listed = api.get("/api/v1/conversations", params={"contact_id": contact["id"]}).json()
    assert {c["id"] for c in listed["items"]} == {conversation_id, later["conversation_id"]}
