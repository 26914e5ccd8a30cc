"""The voice channel (Twilio Voice) end to end, over real HTTP, on SQLite and PostgreSQL.

Webhook bodies are the ``voice_*`` parameter sets of ``tests/fixtures/twilio``, with fresh
CallSids, RecordingSids and numbers per test, form-encoded and signed with the ``twilio``
package's own ``RequestValidator`` for the URL Twilio would have called. The TwiML Hilo
answers with is compared with ``voice_response_voicemail.xml`` and with what the ``twilio``
package's ``VoiceResponse`` builds.
"""

from __future__ import annotations

import secrets
import time
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from twilio.twiml.voice_response import VoiceResponse

from hilo.channels.base import ChannelContext, RawRequest
from hilo.channels.voice import VoiceChannel
from hilo.errors import InvalidPayload
from tests.channels.test_sms import (
    PROXY_HOST,
    Sms,
    create_sms,
    customer_writes,
    inbound_events,
    landed,
    load,
    message_row,
    new_phone,
    new_sid,
    processed,
    timeline,
    webhook,
)
from tests.conftest import Api, wait_for

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "twilio"


class Voice(Sms):
    """A voice channel: the same Twilio account data and signing as SMS, its own URL."""

    @property
    def url(self) -> str:
        return f"{self.api.base_url}/webhooks/voice/{self.id}"

    @property
    def proxied_url(self) -> str:
        return f"https://{PROXY_HOST}/webhooks/voice/{self.id}"

    def incoming(self, caller: str, *, call_sid: str | None = None) -> dict[str, str]:
        params = webhook("voice_incoming_call")
        params.update(
            AccountSid=self.account_sid,
            CallSid=call_sid or new_sid("CA"),
            From=caller,
            Caller=caller,
            To=self.phone_number,
            Called=self.phone_number,
        )
        return params

    def completed(self, call: dict[str, str], **extra: str) -> dict[str, str]:
        params = webhook("voice_call_status_completed")
        params.update(
            AccountSid=self.account_sid,
            CallSid=call["CallSid"],
            From=call["From"],
            To=self.phone_number,
            **extra,
        )
        return params

    def recording(self, call: dict[str, str], recording_sid: str) -> dict[str, str]:
        params = webhook("voice_recording_status_completed")
        params.update(
            AccountSid=self.account_sid,
            CallSid=call["CallSid"],
            RecordingSid=recording_sid,
            RecordingUrl=recording_url(self.account_sid, recording_sid),
        )
        return params

    def transcription(self, call: dict[str, str], recording_sid: str, words: str) -> dict[str, str]:
        params = webhook("voice_transcription_callback")
        params.update(
            AccountSid=self.account_sid,
            CallSid=call["CallSid"],
            RecordingSid=recording_sid,
            RecordingUrl=recording_url(self.account_sid, recording_sid),
            TranscriptionSid=new_sid("TR"),
            TranscriptionText=words,
        )
        return params


def recording_url(account_sid: str, recording_sid: str) -> str:
    return f"https://api.twilio.com/2010-04-01/Accounts/{account_sid}/Recordings/{recording_sid}"


def create_voice(api: Api, **config: str) -> Voice:
    account_sid, auth_token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    phone_number = "+3491" + "".join(secrets.choice("0123456789") for _ in range(7))
    body = {
        "type": "voice",
        "name": "Asistencia en carretera",
        "config": {
            "account_sid": account_sid,
            "auth_token": auth_token,
            "phone_number": phone_number,
            **config,
        },
    }
    response = api.post("/api/v1/channels", json=body)
    assert response.status_code == 201, response.text
    channel = response.json()
    assert channel["provider"] == "twilio"
    assert "auth_token" not in channel["config"]
    voice = Voice(api, channel, account_sid, auth_token, phone_number)
    assert channel["webhook_url"] == voice.url
    return voice


def xml(text: str) -> ET.Element:
    """TwiML parsed: from our own server, the fixtures or the twilio package."""
    return ET.fromstring(text)  # noqa: S314 - trusted test data


def twiml(response: httpx.Response) -> ET.Element:
    """The TwiML of a 200 answer, parsed."""
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/xml")
    return xml(response.text)


def shape(element: ET.Element) -> list[tuple[str, list[str]]]:
    """The verbs of a TwiML document in order, each with its attribute names."""
    return [(verb.tag, sorted(verb.attrib)) for verb in element]


def same_twiml(ours: ET.Element, theirs: str) -> bool:
    """Whether two TwiML documents have the same verbs, attributes and texts."""
    other = xml(theirs)

    def tree(e: ET.Element) -> Any:
        return (e.tag, dict(e.attrib), (e.text or "").strip(), [tree(c) for c in e])

    return bool(tree(ours) == tree(other))


def call_item(api: Api, call_sid: str) -> dict[str, Any]:
    """The call's message in its conversation, as it is now."""
    _contact, item = landed(api, call_sid)
    return message_row(api, item["conversation_id"], item["id"])


def call_until(api: Api, call_sid: str, check: Any, message: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        row = call_item(api, call_sid)
        return row if check(row) else None

    found: dict[str, Any] = wait_for(ready, timeout=15, message=message)
    return found


def trail(api: Api, conversation_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.get(f"/api/v1/conversations/{conversation_id}/events").json()[
        "items"
    ]
    return items


def context(config: dict[str, Any]) -> ChannelContext:
    return ChannelContext(
        id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        type="voice",
        provider="twilio",
        config=config,
        secrets={"auth_token": "t"},
    )


def raw(body: str, url: str = "https://hilo.example.com/webhooks/voice/x") -> RawRequest:
    return RawRequest(
        body=body.encode(), headers={}, query={}, url=url, received_at=datetime.now(UTC)
    )


def load_body(key: str) -> str:
    """A form body of ``webhook_params.json`` exactly as stored."""
    body: str = load("webhook_params.json")["bodies"][key]
    return body


# -- set-up and TwiML (no server) ------------------------------------------------------------


def test_voice_voicemail_twiml_has_the_fixture_verbs_and_matches_twilio_library() -> None:
    url = "https://hilo.example.com/webhooks/voice/x"
    config = {"answer": "voicemail", "language": "en"}
    [item] = VoiceChannel().parse_inbound(
        raw(load_body("voice_incoming_call"), url), context(config)
    )
    assert item.answer is not None
    ours = xml(item.answer)
    fixture = xml((FIXTURES / "voice_response_voicemail.xml").read_text())
    # Say (in the channel's language) then Record with the fixture's attributes; then a
    # Hangup for a caller who said nothing.
    assert shape(fixture) == [("Say", []), shape(fixture)[1]]
    assert shape(ours) == [("Say", ["language"]), shape(fixture)[1], ("Hangup", [])]
    expected = VoiceResponse()
    expected.say(
        "Thank you for calling. Please leave your message after the tone.", language="en-US"
    )
    expected.record(
        action=url,
        max_length=120,
        play_beep=True,
        transcribe=True,
        transcribe_callback=url,
        recording_status_callback=url,
        recording_status_callback_event="completed",
    )
    expected.hangup()
    assert same_twiml(ours, str(expected))


def test_voice_malformed_webhooks_are_invalid_payload() -> None:
    adapter = VoiceChannel()
    channel = context({"answer": "voicemail", "language": "es"})
    for body in (
        "",
        "From=%2B14155550100&CallStatus=ringing",
        "{not a form",
        "CallSid=CA1&CallStatus=ringing",
        "CallSid=CA1&RecordingSid=RE1",
        "CallSid=CA1&CallbackSource=call-progress-events",
    ):
        with pytest.raises(InvalidPayload):
            adapter.parse_inbound(raw(body), channel)


def test_voice_channel_config_is_checked(api: Api) -> None:
    response = api.post(
        "/api/v1/channels",
        json={
            "type": "voice",
            "name": "Voz",
            "config": {
                "account_sid": "AC12",
                "phone_number": "555-0100",
                "answer": "forward",
                "language": "fr",
            },
        },
    )
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    for name in ("account_sid", "auth_token", "phone_number", "forward_to", "language"):
        assert name in message
    unknown = api.post(
        "/api/v1/channels",
        json={
            "type": "voice",
            "name": "Voz",
            "config": {
                "account_sid": "AC" + "0" * 32,
                "auth_token": "t",
                "phone_number": "+34910000000",
                "answer": "hang-up",
            },
        },
    )
    assert unknown.status_code == 422 and "config.answer" in unknown.json()["error"]["message"]


# -- the call and what follows it ------------------------------------------------------------


def test_voice_incoming_call_answers_voicemail_in_spanish_and_lands_in_timeline(
    api: Api,
) -> None:
    voice = create_voice(api)
    caller = new_phone()
    params = voice.incoming(caller)
    answer = twiml(voice.post(params))
    say, record, _hangup = list(answer)
    assert say.tag == "Say" and say.attrib == {"language": "es-ES"}
    assert say.text == "Gracias por llamar. Por favor, deje su mensaje después de la señal."
    # Every callback of the recording comes back to the URL Twilio called.
    assert record.tag == "Record"
    for name in ("action", "transcribeCallback", "recordingStatusCallback"):
        assert record.attrib[name] == voice.url
    assert record.attrib["transcribe"] == "true"
    contact, item = landed(api, params["CallSid"])
    assert item["kind"] == "inbound" and item["channel_id"] == voice.id
    assert item["data"]["call"] == {
        "sid": params["CallSid"],
        "direction": "inbound",
        "status": "ringing",
        "answer": "voicemail",
        "to": voice.phone_number,
    }
    identities = [(i["kind"], i["value"], i["verified"]) for i in contact["identities"]]
    assert identities == [("phone", caller, True)]
    events = [e["type"] for e in trail(api, item["conversation_id"])]
    assert events[:2] == ["conversation.created", "message.received"]


def test_voice_custom_greeting_in_english_is_said(api: Api) -> None:
    greeting = "Roadside assistance. Leave your plate number and where you are."
    voice = create_voice(api, language="en", greeting=greeting)
    say = twiml(voice.post(voice.incoming(new_phone())))[0]
    assert (say.attrib, say.text) == ({"language": "en-US"}, greeting)


def test_voice_forward_answers_with_dial_to_configured_number(api: Api) -> None:
    voice = create_voice(api, answer="forward", forward_to="+34 600 11 22 33")
    assert voice.channel["config"]["forward_to"] == "+34600112233"
    params = voice.incoming(new_phone())
    answer = twiml(voice.post(params))
    expected = VoiceResponse()
    expected.dial().number("+34600112233")
    assert same_twiml(answer, str(expected))
    _contact, item = landed(api, params["CallSid"])
    assert item["data"]["call"]["answer"] == "forward"
    assert item["data"]["call"]["forward_to"] == "+34600112233"


def test_voice_call_status_completed_records_duration_on_the_call(api: Api) -> None:
    voice = create_voice(api)
    call = voice.incoming(new_phone())
    twiml(voice.post(call))
    landed(api, call["CallSid"])
    answer = twiml(voice.post(voice.completed(call)))
    assert list(answer) == []
    row = call_until(
        api, call["CallSid"], lambda r: r["data"]["call"]["status"] == "completed", "completed"
    )
    assert row["data"]["call"]["duration"] == 42
    [event] = [e for e in trail(api, row["conversation_id"]) if e["type"] == "call.updated"]
    assert event["message_id"] == row["id"]
    assert event["data"] == {"update": "status", "status": "completed", "duration": 42}


def test_voice_call_status_never_goes_backwards(api: Api) -> None:
    voice = create_voice(api)
    call = voice.incoming(new_phone())
    twiml(voice.post(call))
    landed(api, call["CallSid"])
    twiml(voice.post(voice.completed(call)))
    call_until(api, call["CallSid"], lambda r: r["data"]["call"]["status"] == "completed", "done")
    late = voice.completed(call, CallStatus="in-progress", SequenceNumber="1")
    late.pop("CallDuration")
    twiml(voice.post(late))
    wait_for(lambda: processed(api.server, voice.id, f"{call['CallSid']}:in-progress"))
    row = call_item(api, call["CallSid"])
    assert row["data"]["call"]["status"] == "completed"
    updates = [e for e in trail(api, row["conversation_id"]) if e["type"] == "call.updated"]
    assert len(updates) == 1


def test_voice_recording_callback_attaches_recording_to_the_call(api: Api) -> None:
    voice = create_voice(api)
    call = voice.incoming(new_phone())
    twiml(voice.post(call))
    recording_sid = new_sid("RE")
    answer = twiml(voice.post(voice.recording(call, recording_sid)))
    assert [verb.tag for verb in answer] == ["Hangup"]
    row = call_until(api, call["CallSid"], lambda r: r["attachments"], "recording attached")
    assert row["attachments"] == [
        {
            "type": "audio",
            "url": recording_url(voice.account_sid, recording_sid),
            "mime_type": "audio/wav",
            "media_id": recording_sid,
            "duration": 17,
        }
    ]
    assert row["data"]["call"]["recording_sid"] == recording_sid
    assert row["data"]["call"]["recording_duration"] == 17
    # <Record>'s action request names the same recording: a duplicate, answered the same.
    action = {
        "AccountSid": voice.account_sid,
        "CallSid": call["CallSid"],
        "From": call["From"],
        "To": voice.phone_number,
        "CallStatus": "in-progress",
        "RecordingUrl": recording_url(voice.account_sid, recording_sid),
        "RecordingSid": recording_sid,
        "RecordingDuration": "17",
        "Digits": "hangup",
    }
    assert [verb.tag for verb in twiml(voice.post(action))] == ["Hangup"]
    rows = [
        r for r in inbound_events(api.server, voice.id) if r["provider_event_id"] == recording_sid
    ]
    assert len(rows) == 1
    assert len(call_item(api, call["CallSid"])["attachments"]) == 1


def test_voice_transcription_callback_puts_transcript_in_the_same_thread(api: Api) -> None:
    voice = create_voice(api)
    caller = new_phone()
    first = customer_writes(create_sms(api), caller, "Se me ha averiado el coche")
    call = voice.incoming(caller)
    twiml(voice.post(call))
    recording_sid = new_sid("RE")
    twiml(voice.post(voice.recording(call, recording_sid)))
    words = f"Estoy en la A-7, kilómetro 12, el coche no arranca. {uuid.uuid4().hex[:6]}"
    answer = twiml(voice.post(voice.transcription(call, recording_sid, words)))
    assert list(answer) == []
    row = call_until(api, call["CallSid"], lambda r: r["text"] == words, "transcript")
    assert row["conversation_id"] == first["conversation_id"]
    assert row["data"]["call"]["transcription_status"] == "completed"
    assert [a["media_id"] for a in row["attachments"]] == [recording_sid]
    events = trail(api, row["conversation_id"])
    transcribed = [e for e in events if e["data"].get("transcribed")]
    assert len(transcribed) == 1 and transcribed[0]["data"]["update"] == "transcription"
    # The customer's words are in the thread, never in the trail or the logs.
    assert words not in str(events)
    assert words not in api.server.logs()


def test_voice_callbacks_retried_together_each_count_once(api: Api) -> None:
    voice = create_voice(api)
    call = voice.incoming(new_phone())
    recording_sid = new_sid("RE")
    transcription = voice.transcription(call, recording_sid, "Llamadme, por favor.")
    for _round in range(2):
        for params in (
            call,
            voice.completed(call),
            voice.recording(call, recording_sid),
            transcription,
        ):
            assert twiml(voice.post(params)) is not None
    call_until(api, call["CallSid"], lambda r: r["text"], "transcript")

    def all_processed() -> bool:
        rows = inbound_events(api.server, voice.id)
        return len(rows) == 4 and all(r["status"] == "processed" for r in rows)

    wait_for(all_processed, timeout=15)
    row = call_item(api, call["CallSid"])
    assert row["text"] == "Llamadme, por favor."
    assert len(row["attachments"]) == 1
    # Processed side by side, each callback's news is kept: none overwrote another's.
    assert row["data"]["call"] == {
        **row["data"]["call"],
        "status": "completed",
        "duration": 42,
        "recording_sid": recording_sid,
        "recording_duration": 17,
        "transcription_sid": transcription["TranscriptionSid"],
        "transcription_status": "completed",
    }
    updates = [
        e["data"]["update"]
        for e in trail(api, row["conversation_id"])
        if e["type"] == "call.updated"
    ]
    assert sorted(updates) == ["recording", "status", "transcription"]
    assert len(timeline(api, row["contact_id"])) == 1
    keys = sorted(r["provider_event_id"] for r in inbound_events(api.server, voice.id))
    assert keys == sorted(
        [
            call["CallSid"],
            f"{call['CallSid']}:completed",
            recording_sid,
            transcription["TranscriptionSid"],
        ]
    )


def test_voice_status_arriving_before_the_call_is_applied_once_the_call_lands(api: Api) -> None:
    voice = create_voice(api)
    call = voice.incoming(new_phone())
    twiml(voice.post(voice.completed(call)))
    twiml(voice.post(call))
    row = call_until(
        api, call["CallSid"], lambda r: r["data"]["call"]["status"] == "completed", "applied"
    )
    assert row["data"]["call"]["duration"] == 42


def test_voice_same_number_as_sms_is_one_contact_one_conversation(api: Api) -> None:
    sms = create_sms(api)
    voice = create_voice(api)
    caller = new_phone()
    first = customer_writes(sms, caller, "Hola, tengo una avería")
    call = voice.incoming(caller)
    twiml(voice.post(call))
    contact, item = landed(api, call["CallSid"])
    assert item["conversation_id"] == first["conversation_id"]
    assert [c["id"] for c in api.get("/api/v1/contacts").json()["items"]] == [contact["id"]]
    assert [i["channel_id"] for i in timeline(api, contact["id"])] == [sms.id, voice.id]
    [switch] = [
        e
        for e in trail(api, item["conversation_id"])
        if e["type"] == "conversation.channel_switched"
    ]
    assert switch["channel_id"] == voice.id and switch["data"]["from_channel_id"] == sms.id


def test_voice_call_from_withheld_number_is_answered_but_starts_no_conversation(
    api: Api,
) -> None:
    voice = create_voice(api)
    params = voice.incoming("+266696687")  # what Twilio sends for an anonymous caller
    params.update(From="anonymous", Caller="anonymous")
    answer = twiml(voice.post(params))
    assert [verb.tag for verb in answer] == ["Say", "Record", "Hangup"]
    row = wait_for(lambda: processed(api.server, voice.id, params["CallSid"]))
    assert row["status"] == "unsupported"
    assert api.get("/api/v1/contacts").json()["items"] == []


# -- signatures ------------------------------------------------------------------------------


def test_voice_forged_signature_stores_nothing(api: Api) -> None:
    voice = create_voice(api)
    params = voice.incoming(new_phone())
    for response in (
        voice.post(params, token=secrets.token_hex(16)),
        voice.post(params, signed_url=voice.url.replace("/voice/", "/sms/")),
        voice.post(params, sign=False),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_signature"
    time.sleep(0.3)
    assert inbound_events(api.server, voice.id) == []


def test_voice_through_proxy_points_callbacks_at_the_public_url(api: Api) -> None:
    voice = create_voice(api)
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": PROXY_HOST}
    params = voice.incoming(new_phone())
    assert voice.post(params, headers=proxy).status_code == 401
    record = twiml(voice.post(params, signed_url=voice.proxied_url, headers=proxy))[1]
    assert record.attrib["recordingStatusCallback"] == voice.proxied_url
    landed(api, params["CallSid"])


# -- agents' calls and replies ---------------------------------------------------------------


def test_agent_logs_outbound_call_in_timeline_and_trail(api: Api) -> None:
    voice = create_voice(api)
    caller = new_phone()
    item = customer_writes(create_sms(api), caller, "Estoy tirado en la A-7")
    conversation_id = item["conversation_id"]
    logged = api.post(
        f"/api/v1/conversations/{conversation_id}/calls",
        json={
            "direction": "outbound",
            "duration_seconds": 185,
            "outcome": "answered",
            "notes": "Grúa en camino, llegada estimada 40 minutos.",
            "channel_id": voice.id,
            "started_at": "2026-03-02T10:15:00+01:00",
        },
    )
    assert logged.status_code == 201, logged.text
    call = logged.json()
    assert call["kind"] == "call" and call["status"] == "logged"
    assert call["channel_id"] == voice.id and call["sender_type"] == "token"
    assert call["text"] == "Grúa en camino, llegada estimada 40 minutos."
    assert call["data"]["call"] == {
        "direction": "outbound",
        "outcome": "answered",
        "duration": 185,
        "logged": True,
        "started_at": "2026-03-02T09:15:00+00:00",
    }
    assert [i["id"] for i in timeline(api, item["contact_id"])] == [item["id"], call["id"]]
    [event] = [e for e in trail(api, conversation_id) if e["type"] == "call.logged"]
    assert event["message_id"] == call["id"] and event["actor"]["type"] == "token"
    assert event["data"] == {"direction": "outbound", "outcome": "answered", "duration": 185}
    assert "Grúa" not in str(event)
    # Nothing is queued for delivery: a logged call is not a message to the customer.
    assert not [e for e in trail(api, conversation_id) if e["type"] == "message.queued"]


def test_logging_a_call_checks_its_fields(api: Api) -> None:
    item = customer_writes(create_sms(api), new_phone())
    path = f"/api/v1/conversations/{item['conversation_id']}/calls"
    for body in (
        {"direction": "sideways", "duration_seconds": 10},
        {"direction": "outbound", "duration_seconds": -1},
        {"direction": "outbound", "duration_seconds": 10, "started_at": "2026-03-02T10:15:00"},
        {"direction": "outbound", "duration_seconds": 10, "outcome": "great"},
    ):
        assert api.post(path, json=body).status_code == 422, body
    missing = api.post(
        f"/api/v1/conversations/{uuid.uuid4()}/calls",
        json={"direction": "outbound", "duration_seconds": 10},
    )
    assert missing.status_code == 404
    unknown_channel = api.post(
        path,
        json={"direction": "outbound", "duration_seconds": 10, "channel_id": str(uuid.uuid4())},
    )
    assert unknown_channel.status_code == 404


def test_text_reply_on_voice_channel_fails_with_clear_error(api: Api) -> None:
    voice = create_voice(api)
    call = voice.incoming(new_phone())
    twiml(voice.post(call))
    _contact, item = landed(api, call["CallSid"])
    reply = api.post(
        f"/api/v1/conversations/{item['conversation_id']}/messages", json={"text": "Le llamamos"}
    )
    assert reply.status_code == 202, reply.text

    def failed() -> dict[str, Any] | None:
        row = message_row(api, item["conversation_id"], reply.json()["id"])
        return row if row["status"] == "failed" else None

    row = wait_for(failed)
    assert "cannot deliver a text message" in row["error"]
