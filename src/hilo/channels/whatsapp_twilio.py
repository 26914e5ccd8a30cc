"""WhatsApp through Twilio: provider ``twilio`` of the ``whatsapp`` channel.

Inbound: Twilio POSTs the same signed form as for SMS (``X-Twilio-Signature``, see
:mod:`hilo.channels.twilio_common`) to ``/webhooks/whatsapp/{channel_id}``, with
``From``/``To`` written ``whatsapp:+E164`` and WhatsApp's own fields: ``WaId``,
``ProfileName``, ``MessageType``, ``ButtonText``/``ButtonPayload``, ``ListId``/``ListTitle``,
``Latitude``/``Longitude``/``Address``/``Label``, ``OriginalRepliedMessageSid``,
``NumMedia``/``MediaUrl{N}``. Status callbacks (``MessageStatus``) come to the same URL.
Outbound: the Messages API of :mod:`hilo.channels.sms` with ``whatsapp:`` addresses: ``Body``
and at most one ``MediaUrl``, or an approved template as ``ContentSid`` and
``ContentVariables``. Media: each ``MediaUrl{N}`` is fetched with the account's credentials.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from hilo.channels.base import (
    ChannelContext,
    InboundItem,
    MediaError,
    MediaLocation,
    MessageTemplate,
    NoSetupCheck,
    OutboundMessage,
    RawRequest,
    Sender,
    SendError,
    SendResult,
)
from hilo.channels.phone import e164, is_e164
from hilo.channels.sms import (
    EMPTY_TWIML,
    MAX_BODY_CHARS,
    media_attachments,
    message_form,
    post_message,
    status_callback,
    status_item,
)
from hilo.channels.twilio_common import (
    DEFAULT_API_BASE_URL,
    check_account,
    invalid,
    text,
    verify_signature,
)

log = logging.getLogger(__name__)

PREFIX = "whatsapp:"
# Twilio's MessageType values that carry nothing Hilo can show.
UNSUPPORTED_TYPES = ("unsupported", "unknown")


def _address(raw: str) -> str | None:
    """``whatsapp:+E164`` as the E.164 number, or None for any other address."""
    scheme, sep, number = raw.partition(":")
    return e164(number) if sep and scheme == PREFIX.rstrip(":") else None


class TwilioWhatsApp(NoSetupCheck):
    """WhatsApp through Twilio (provider ``twilio``)."""

    def check_config(
        self, config: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        number = text(config.get("phone_number")).strip()
        # The sender as Twilio's console shows it, "whatsapp:+1415…", is the number too.
        number = number.removeprefix(PREFIX)
        return check_account({**config, "phone_number": number})

    def verify(self, request: RawRequest, channel: ChannelContext) -> None:
        verify_signature(request, channel)

    def parse_inbound(self, request: RawRequest, channel: ChannelContext) -> list[InboundItem]:
        sid, params = message_form(request)
        if "MessageStatus" in params:
            item = status_item(sid, params)
        elif "From" not in params:
            raise invalid("From")
        else:
            item = self._message(sid, params, channel)
        # Empty TwiML: stored, and no automatic reply.
        item.answer = EMPTY_TWIML
        return [item]

    def _message(self, sid: str, params: dict[str, str], channel: ChannelContext) -> InboundItem:
        phone = _address(params["From"])
        kind = params.get("MessageType", "").strip().lower() or "text"
        data: dict[str, Any] = {"type": kind, "to": params.get("To", "")}
        if phone is None or kind in UNSUPPORTED_TYPES:
            log.info("whatsapp message of type %s unsupported on channel %s", kind, channel.id)
            return InboundItem(
                provider_event_id=sid,
                kind="unsupported",
                data={**data, "from": params["From"], "reason": "not a WhatsApp message we read"},
            )
        wa_id = params.get("WaId", "").strip()
        item = InboundItem(
            provider_event_id=sid,
            kind="message",
            # WhatsApp vouches for the number; the wa_id is it, as Meta's webhooks name it.
            sender=Sender(
                external_id=wa_id if wa_id.isdigit() else phone.lstrip("+"),
                name=params.get("ProfileName") or None,
                phone=phone,
                phone_verified=True,
            ),
            text=params.get("Body", ""),
            attachments=[{**a, "status": "pending"} for a in media_attachments(params)],
            data=data,
        )
        self._fill(item, params)
        return item

    def _fill(self, item: InboundItem, params: dict[str, str]) -> None:
        """What WhatsApp adds beyond text: replies, buttons, places, referrals."""
        if params.get("OriginalRepliedMessageSid"):
            item.data["reply_to"] = params["OriginalRepliedMessageSid"]
        if "true" in (params.get("Forwarded"), params.get("FrequentlyForwarded")):
            item.data["forwarded"] = True
        if params.get("ButtonPayload") or params.get("ButtonText"):
            item.text = params.get("ButtonText") or item.text
            item.data.update(payload=params.get("ButtonPayload", ""), reply_type="button")
        if params.get("ListId"):
            item.text = params.get("ListTitle") or item.text
            item.data.update(payload=params["ListId"], reply_type="list_reply")
        if params.get("Latitude") and params.get("Longitude"):
            place = {
                "latitude": params["Latitude"],
                "longitude": params["Longitude"],
                "name": params.get("Label", ""),
                "address": params.get("Address", ""),
            }
            words = [
                f"📍 {place['latitude']},{place['longitude']}",
                place["name"],
                place["address"],
            ]
            item.text = " ".join(w for w in words if w)
            item.data["location"] = place
        referral = {
            key: value
            for key, value in params.items()
            if key.startswith("Referral") and key != "ReferralNumMedia" and value
        }
        if referral:
            item.data["referral"] = referral

    async def send(
        self,
        client: httpx.AsyncClient,
        channel: ChannelContext,
        message: OutboundMessage,
        template: MessageTemplate | None,
    ) -> SendResult:
        recipient = "+" + message.recipient.lstrip("+")
        if not is_e164(recipient):
            raise SendError(
                f"the recipient {message.recipient!r} is not a WhatsApp number", retryable=False
            )
        sent: dict[str, str] = {
            "To": PREFIX + recipient,
            "From": PREFIX + text(channel.config["phone_number"]),
            "StatusCallback": status_callback(channel),
        }
        if template is not None:
            values = message.data.get("template", {}).get("params", [])
            sent["ContentSid"] = template.provider_id or ""
            sent["ContentVariables"] = json.dumps(
                {str(i): text(v) for i, v in enumerate(values, start=1)}, ensure_ascii=False
            )
        else:
            if len(message.text) > MAX_BODY_CHARS:
                raise SendError(
                    f"the text has {len(message.text)} characters; "
                    f"Twilio allows {MAX_BODY_CHARS} in one WhatsApp message",
                    retryable=False,
                )
            if message.text.strip():
                sent["Body"] = message.text
            if message.attachments:
                sent["MediaUrl"] = text(message.attachments[0].get("link"))
            if "Body" not in sent and "MediaUrl" not in sent:
                raise SendError("the message has no text nor file to send", retryable=False)
        return await post_message(client, channel, sent, idempotency_key=message.message_id)

    async def media_location(
        self, client: httpx.AsyncClient, channel: ChannelContext, attachment: Mapping[str, Any]
    ) -> MediaLocation | None:
        """A ``MediaUrl{N}`` of the account's API, fetched with its credentials."""
        url = text(attachment.get("url"))
        if not url:
            return None
        api = urlsplit(text(channel.config.get("api_base_url")) or DEFAULT_API_BASE_URL)
        where = urlsplit(url)
        if (where.scheme, where.netloc) != (api.scheme, api.netloc):
            # The credentials go to Twilio's API only, whatever a payload names.
            raise MediaError(f"media outside {api.netloc} not fetched", retryable=False)
        return MediaLocation(
            url=url,
            auth=(text(channel.config["account_sid"]), text(channel.secrets["auth_token"])),
            mime_type=text(attachment.get("mime_type")) or None,
            # Twilio answers with a redirect to its media store (credentials not forwarded).
            follow_redirects=True,
        )
