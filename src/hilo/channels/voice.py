"""Phone calls through Twilio Voice: the call, its status, recording and transcript in the thread.

Inbound: Twilio POSTs form parameters, signed like every Twilio webhook (``twilio_common``),
to ``/webhooks/voice/{channel_id}``: the number's "A call comes in" URL and its "Call status
changes" URL. Hilo answers an incoming call with TwiML, as the channel's ``answer`` says:
``voicemail`` (a greeting in the channel's language, then ``<Record>`` with a transcription)
or ``forward`` (``<Dial>`` to ``forward_to``). The callbacks of ``<Record>`` (its ``action``,
``recordingStatusCallback`` and ``transcribeCallback``) come back to the URL Twilio called.

Which request is which is read from its parameters, as Twilio defines them, and so is each
one's dedup key:

- ``TranscriptionSid``: a transcription (key: the TranscriptionSid);
- ``RecordingSid``: a finished recording, from ``action`` or the status callback (key: the
  RecordingSid, so the second of the two is a duplicate);
- ``CallbackSource`` / ``SequenceNumber``, or a final ``CallStatus``: a call status callback
  (key: ``CallSid:CallStatus``);
- anything else with a ``CallSid``: the incoming call itself (key: the CallSid).

The call is a customer message whose ``data["call"]`` says how it went; what follows updates
that same message (``calls.service.do_apply_update``), in whatever conversation it is.
The caller's number is a workspace-wide ``phone`` identity, verified by the carrier, so a call
joins the contact known from SMS, WhatsApp or RCS.

Voice carries no text: an agent's reply on this channel fails with a clear error.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from hilo.channels.base import (
    ChannelContext,
    ChannelSetup,
    InboundItem,
    IngestResult,
    OutboundMessage,
    RawRequest,
    Sender,
    SendError,
    SendResult,
)
from hilo.channels.checks import invalid_config, invalid_payload, text
from hilo.channels.phone import e164
from hilo.channels.twilio_common import EMPTY_TWIML, TwilioWebhook, check_account, form
from hilo.i18n import _, translate

log = logging.getLogger(__name__)

ANSWERS = ("voicemail", "forward")
# Twilio's <Record transcribe> only transcribes recordings of up to two minutes.
MAX_RECORDING_SECONDS = 120
MAX_GREETING_CHARS = 1000
# The <Say> language when the channel names a language without its region.
SAY_LANGUAGES = {"es": "es-ES", "en": "en-US"}
DEFAULT_GREETING = _("Thank you for calling. Please leave your message after the tone.")
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
# After <Record>: the caller has left their message.
HANGUP_TWIML = "<Response><Hangup/></Response>"

_LANGUAGE = re.compile(r"^(es|en)(-[A-Z]{2})?$")


def _seconds(raw: str | None) -> int | None:
    value = (raw or "").strip()
    return int(value) if value.isdigit() else None


def _twiml(response: ET.Element) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(response, encoding="unicode")


def answer_twiml(config: Mapping[str, Any], callback_url: str) -> str:
    """The TwiML an incoming call is answered with, as the channel is configured."""
    response = ET.Element("Response")
    if config.get("answer") == "forward":
        dial = ET.SubElement(response, "Dial")
        ET.SubElement(dial, "Number").text = text(config.get("forward_to"))
        return _twiml(response)
    language = text(config.get("language")) or "es"
    greeting = text(config.get("greeting")) or translate(DEFAULT_GREETING, language[:2])
    say = ET.SubElement(response, "Say", language=SAY_LANGUAGES.get(language, language))
    say.text = greeting
    ET.SubElement(
        response,
        "Record",
        action=callback_url,
        maxLength=str(MAX_RECORDING_SECONDS),
        playBeep="true",
        transcribe="true",
        transcribeCallback=callback_url,
        recordingStatusCallback=callback_url,
        recordingStatusCallbackEvent="completed",
    )
    # Reached only when nothing was recorded (Twilio then skips the action URL).
    ET.SubElement(response, "Hangup")
    return _twiml(response)


class VoiceChannel(TwilioWebhook):
    type: ClassVar[str] = "voice"
    label: ClassVar[str] = _("Phone")
    setup_help: ClassVar[str] = _(
        "In Twilio's console, open the phone number and paste the webhook address under "
        "'A call comes in' and 'Call status changes' (HTTP POST)."
    )
    providers: ClassVar[tuple[str, ...]] = ("twilio",)
    # The caller's number: the same person as on SMS, WhatsApp and RCS.
    identity_kind: ClassVar[str] = "phone"
    identity_scope: ClassVar[str] = "workspace"
    # Nobody says STOP to a voicemail; opting out is done on the text channels.
    supports_opt_out: ClassVar[bool] = False
    # A written reply to a caller goes on the last text channel they used, not to voice.
    no_text_replies: ClassVar[bool] = True

    # -- set-up -------------------------------------------------------------------------

    def validate_config(self, provider: str, config: dict[str, Any]) -> ChannelSetup:
        shown, secrets, wrong = check_account(config)
        answer = text(config.get("answer")).strip() or "voicemail"
        if answer not in ANSWERS:
            wrong.append("answer")
        shown["answer"] = answer
        if answer == "forward":
            forward_to = e164(text(config.get("forward_to")))
            if forward_to is None:
                wrong.append("forward_to")
            shown["forward_to"] = forward_to
        language = text(config.get("language")).strip() or "es"
        if not _LANGUAGE.match(language):
            wrong.append("language")
        shown["language"] = language
        greeting = text(config.get("greeting")).strip()
        if len(greeting) > MAX_GREETING_CHARS:
            wrong.append("greeting")
        if greeting:
            shown["greeting"] = greeting
        if wrong:
            raise invalid_config(wrong)
        return ChannelSetup(config=shown, secrets=secrets)

    # -- inbound: verify() and handshake() are TwilioWebhook's -------------------------

    def parse_inbound(self, request: RawRequest, channel: ChannelContext) -> list[InboundItem]:
        try:
            params = dict(form(request.body))
        except (UnicodeDecodeError, ValueError) as exc:
            raise invalid_payload("body") from exc
        call_sid = params.get("CallSid", "").strip()
        if not call_sid:
            raise invalid_payload("CallSid")
        if "TranscriptionSid" in params:
            return [self._transcription(call_sid, params)]
        if "RecordingSid" in params:
            return [self._recording(call_sid, params)]
        status = params.get("CallStatus", "").strip().lower()
        if "CallbackSource" in params or "SequenceNumber" in params or status in FINAL_STATUSES:
            return [self._status(call_sid, status, params)]
        return [self._call(call_sid, status, params, request, channel)]

    def _call(
        self,
        call_sid: str,
        status: str,
        params: dict[str, str],
        request: RawRequest,
        channel: ChannelContext,
    ) -> InboundItem:
        if "From" not in params:
            raise invalid_payload("From")
        answer = text(channel.config.get("answer")) or "voicemail"
        call: dict[str, Any] = {
            "sid": call_sid,
            "direction": "inbound",
            "status": status or "ringing",
            "answer": answer,
            "to": params.get("To", ""),
        }
        if answer == "forward":
            call["forward_to"] = text(channel.config.get("forward_to"))
        for name, key in (("CallerName", "caller_name"), ("ForwardedFrom", "forwarded_from")):
            if params.get(name):
                call[key] = params[name]
        twiml = answer_twiml(channel.config, request.url)
        phone = e164(params["From"])
        log.info("voice call on channel %s answered with %s", channel.id, answer)
        if phone is None:
            # A withheld number, a SIP or client caller: answered, but nobody to thread it to.
            return InboundItem(
                provider_event_id=call_sid,
                kind="unsupported",
                data={"call": call, "from": params["From"], "reason": "caller has no number"},
                answer=twiml,
            )
        return InboundItem(
            provider_event_id=call_sid,
            kind="message",
            sender=Sender(external_id=phone, phone_verified=True),
            data={"call": call},
            answer=twiml,
        )

    def _status(self, call_sid: str, status: str, params: dict[str, str]) -> InboundItem:
        if not status:
            raise invalid_payload("CallStatus")
        call: dict[str, Any] = {"status": status}
        duration = _seconds(params.get("CallDuration"))
        if duration is not None:
            call["duration"] = duration
        return InboundItem(
            provider_event_id=f"{call_sid}:{status}",
            kind="call",
            data={"provider_message_id": call_sid, "update": "status", "call": call},
            answer=EMPTY_TWIML,
        )

    def _recording(self, call_sid: str, params: dict[str, str]) -> InboundItem:
        recording_sid = params["RecordingSid"].strip()
        url = params.get("RecordingUrl", "").strip()
        if not recording_sid or not url:
            missing = (n for n in ("RecordingSid", "RecordingUrl") if not params.get(n))
            raise invalid_payload(*missing)
        # The <Record> action request names no status: it comes once the recording is done.
        status = params.get("RecordingStatus", "").strip().lower() or "completed"
        duration = _seconds(params.get("RecordingDuration"))
        call: dict[str, Any] = {"recording_sid": recording_sid, "recording_status": status}
        if duration is not None:
            call["recording_duration"] = duration
        if params.get("ErrorCode"):
            call["recording_error"] = params["ErrorCode"]
        attachments = []
        if status == "completed":
            attachments.append(_recording_attachment(recording_sid, url, duration))
        return InboundItem(
            provider_event_id=recording_sid,
            kind="call",
            attachments=attachments,
            data={"provider_message_id": call_sid, "update": "recording", "call": call},
            answer=HANGUP_TWIML,
        )

    def _transcription(self, call_sid: str, params: dict[str, str]) -> InboundItem:
        transcription_sid = params["TranscriptionSid"].strip()
        if not transcription_sid:
            raise invalid_payload("TranscriptionSid")
        status = params.get("TranscriptionStatus", "").strip().lower() or "completed"
        call: dict[str, Any] = {
            "transcription_sid": transcription_sid,
            "transcription_status": status,
        }
        attachments = []
        recording_sid, url = params.get("RecordingSid", ""), params.get("RecordingUrl", "")
        if recording_sid and url:
            # Also here, in case the recording's own callback never comes.
            attachments.append(_recording_attachment(recording_sid, url, None))
        return InboundItem(
            provider_event_id=transcription_sid,
            kind="call",
            text=params.get("TranscriptionText", "") if status == "completed" else "",
            attachments=attachments,
            data={"provider_message_id": call_sid, "update": "transcription", "call": call},
            answer=EMPTY_TWIML,
        )

    def acknowledge(self, results: list[IngestResult]) -> tuple[int, Any]:
        # The call's TwiML (or an empty one for a callback), rendered as XML by the endpoint.
        return 200, next((r.answer for r in results if r.answer), EMPTY_TWIML)

    # -- outbound -----------------------------------------------------------------------

    async def send(
        self, client: httpx.AsyncClient, channel: ChannelContext, message: OutboundMessage
    ) -> SendResult:
        raise SendError(
            "a voice channel cannot deliver a text message; reply on SMS, WhatsApp or RCS",
            retryable=False,
        )


def _recording_attachment(recording_sid: str, url: str, duration: int | None) -> dict[str, Any]:
    """A call recording as attachment metadata; Twilio serves it as WAV, or MP3 at ``.mp3``."""
    attachment: dict[str, Any] = {
        "type": "audio",
        "url": url,
        "mime_type": "audio/wav",
        "media_id": recording_sid,
    }
    if duration is not None:
        attachment["duration"] = duration
    return attachment
