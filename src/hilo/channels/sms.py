"""SMS and MMS through Twilio Programmable Messaging: form webhooks in, Messages API out.

Inbound: Twilio POSTs ``application/x-www-form-urlencoded`` parameters to
``/webhooks/sms/{channel_id}`` (the number's "A message comes in" URL) with
``X-Twilio-Signature: base64(HMAC-SHA1(auth_token, url + sorted params))``, where ``url`` is
the public URL Twilio called (:attr:`RawRequest.url`). The same URL receives the status
callbacks of our own messages (``MessageStatus``), since every send names it as
``StatusCallback``.
Outbound: ``POST {api_base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`` with HTTP
Basic auth (account SID, auth token) and form fields ``To``, ``From``, ``Body``,
``StatusCallback``; the returned ``sid`` is what later status callbacks name.

The sender's id is their phone number in E.164, a workspace-wide ``phone`` identity: the
carrier vouches for it, so an SMS from a number already known from WhatsApp or a company's
app joins that contact.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

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
from hilo.channels.phone import e164 as _e164
from hilo.channels.phone import is_e164
from hilo.channels.twilio_common import (
    DEFAULT_API_BASE_URL,
    EMPTY_TWIML,
    TwilioWebhook,
    check_account,
    invalid_config,
)
from hilo.channels.twilio_common import form as _form
from hilo.channels.twilio_common import invalid as _invalid
from hilo.channels.twilio_common import signature as signature
from hilo.channels.twilio_common import text as _str
from hilo.channels.twilio_common import url_variants as url_variants
from hilo.clock import now
from hilo.i18n import _
from hilo.settings import get_settings

log = logging.getLogger(__name__)

# Twilio refuses a longer Body (error 21617); the carrier splits what it accepts into segments.
MAX_BODY_CHARS = 1600
# Receipts Hilo records; queued/sending/accepted/scheduled/canceled are kept for the trail.
STATUS_MAP = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
}
# Twilio's words for the error codes status callbacks most often carry (they send the code
# alone); https://www.twilio.com/docs/api/errors has them all.
ERROR_TEXTS = {
    "21610": "Attempt to send to unsubscribed recipient",
    "21614": "'To' number is not a valid mobile number",
    "30001": "Queue overflow",
    "30002": "Account suspended",
    "30003": "Unreachable destination handset",
    "30004": "Message blocked",
    "30005": "Unknown destination handset",
    "30006": "Landline or unreachable carrier",
    "30007": "Message filtered by the carrier",
    "30008": "Unknown error",
    "30034": "Message from an unregistered number (US A2P 10DLC)",
    "63016": "Outside the WhatsApp 24-hour window: only a template can be sent",
}


def _error_text(code: str, message: str) -> str | None:
    """Twilio's error as ``Twilio error 30003: Unreachable destination handset``."""
    if not code and not message:
        return None
    words = message or ERROR_TEXTS.get(code, "")
    if not code:
        return words
    return f"Twilio error {code}: {words}" if words else f"Twilio error {code}"


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), or None."""
    raw = response.headers.get("retry-after", "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return float(raw)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max((when - now()).total_seconds(), 0.0) or None


TWILIO_KEYWORDS: Mapping[str, str] = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"), "opted_out"),
    **dict.fromkeys(("START", "YES", "UNSTOP"), "opted_in"),
}


class SmsChannel(TwilioWebhook):
    type: ClassVar[str] = "sms"
    label: ClassVar[str] = "SMS"
    setup_help: ClassVar[str] = _(
        "In Twilio's console, open the phone number and paste the webhook address under "
        "'A message comes in' (HTTP POST)."
    )
    providers: ClassVar[tuple[str, ...]] = ("twilio",)
    # The sender id is the phone number itself: the same person on every channel.
    identity_kind: ClassVar[str] = "phone"
    identity_scope: ClassVar[str] = "workspace"
    # Twilio also answers STOP/START itself on long codes and blocks sends to numbers that
    # opted out (error 21610); Hilo records the choice so agents see it.
    supports_opt_out: ClassVar[bool] = True
    # Twilio's own opt-out handling on long codes and toll-free numbers: it answers these
    # itself and blocks later sends (error 21610), so Hilo records them without confirming.
    provider_keywords: ClassVar[Mapping[str, str]] = TWILIO_KEYWORDS

    # -- set-up -------------------------------------------------------------------------

    def validate_config(self, provider: str, config: dict[str, Any]) -> ChannelSetup:
        config_shown, secrets, wrong = check_account(config)
        if wrong:
            raise invalid_config(wrong)
        return ChannelSetup(config=config_shown, secrets=secrets)

    # -- inbound: verify() and handshake() are TwilioWebhook's -------------------------

    def parse_inbound(self, request: RawRequest, channel: ChannelContext) -> list[InboundItem]:
        sid, params = message_form(request)
        if "MessageStatus" in params:
            return [self._status(sid, params)]
        if "From" not in params or "Body" not in params:
            raise _invalid(*(name for name in ("From", "Body") if name not in params))
        return [self._message(sid, params, channel)]

    def _message(self, sid: str, params: dict[str, str], channel: ChannelContext) -> InboundItem:
        raw_from = params["From"]
        phone = _e164(raw_from)
        data: dict[str, Any] = {"to": params.get("To", "")}
        for name, key in (
            ("NumSegments", "num_segments"),
            ("MessagingServiceSid", "messaging_service_sid"),
            ("OptOutType", "opt_out_type"),
        ):
            if params.get(name):
                data[key] = params[name]
        if phone is None:
            # A short code, an alphanumeric sender id or "whatsapp:+…": not a phone to reply to.
            log.info("sms from a non-E.164 sender ignored on channel %s", channel.id)
            return InboundItem(
                provider_event_id=sid,
                kind="unsupported",
                data={**data, "from": raw_from, "reason": "sender is not an E.164 number"},
            )
        return InboundItem(
            provider_event_id=sid,
            kind="message",
            # The carrier vouches for the sending number. Its phone identity is the sender
            # id itself (identity_kind "phone"), so it is not claimed a second time here.
            sender=Sender(external_id=phone, phone_verified=True),
            text=params["Body"],
            attachments=_media(params),
            data=data,
        )

    def _status(self, sid: str, params: dict[str, str]) -> InboundItem:
        return status_item(sid, params)

    def acknowledge(self, results: list[IngestResult]) -> tuple[int, Any]:
        # Empty TwiML: stored, and no automatic reply. Rendered as XML by the endpoint.
        return 200, EMPTY_TWIML

    # -- outbound -----------------------------------------------------------------------

    async def send(
        self, client: httpx.AsyncClient, channel: ChannelContext, message: OutboundMessage
    ) -> SendResult:
        if not message.text.strip():
            raise SendError("the message has no text to send by SMS", retryable=False)
        if len(message.text) > MAX_BODY_CHARS:
            raise SendError(
                f"the text has {len(message.text)} characters; "
                f"Twilio allows {MAX_BODY_CHARS} in one SMS",
                retryable=False,
            )
        if not is_e164(message.recipient):
            raise SendError(
                f"the recipient {message.recipient!r} is not an E.164 phone number",
                retryable=False,
            )
        form = {
            "To": message.recipient,
            "From": _str(channel.config["phone_number"]),
            "Body": message.text,
            "StatusCallback": status_callback(channel),
        }
        return await post_message(client, channel, form, idempotency_key=message.message_id)


def message_form(request: RawRequest) -> tuple[str, dict[str, str]]:
    """A messaging webhook's ``MessageSid`` and parameters; 422 when they cannot be read."""
    try:
        params = dict(_form(request.body))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _invalid("body") from exc
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if not sid:
        raise _invalid("MessageSid")
    return sid, params


def status_callback(channel: ChannelContext) -> str:
    """The URL Twilio reports a sent message's statuses to: the channel's own webhook."""
    return f"{get_settings().public_url.rstrip('/')}/webhooks/{channel.type}/{channel.id}"


async def post_message(
    client: httpx.AsyncClient,
    channel: ChannelContext,
    form: Mapping[str, str | list[str]],
    *,
    idempotency_key: uuid.UUID,
) -> SendResult:
    """``POST …/Messages.json`` with the channel's account; the new message's sid.

    Raises :class:`SendError` with Twilio's code and words, retryable on 429 and 5xx.
    """
    account_sid = _str(channel.config["account_sid"])
    base = _str(channel.config.get("api_base_url")) or DEFAULT_API_BASE_URL
    url = f"{base.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
    try:
        response = await client.post(
            url,
            data=dict(form),
            auth=(account_sid, _str(channel.secrets["auth_token"])),
            headers={"I-Twilio-Idempotency-Token": str(idempotency_key)},
        )
    except httpx.HTTPError as exc:
        raise SendError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
    try:
        answer = response.json()
    except ValueError:
        answer = None
    answer = answer if isinstance(answer, dict) else {}
    if response.is_success:
        sid = _str(answer.get("sid"))
        if not sid:
            raise SendError(
                f"HTTP {response.status_code} without a message sid: {response.text[:300]}",
                retryable=False,
                provider_error=response.text[:2000],
            )
        return SendResult(provider_message_id=sid)
    raise _api_error(response, answer)


def status_item(sid: str, params: dict[str, str]) -> InboundItem:
    """A status callback (``MessageStatus``) as a receipt of our message ``sid``."""
    raw = params["MessageStatus"].strip().lower()
    provider_event_id = f"{sid}:{raw}"
    data: dict[str, Any] = {"provider_message_id": sid}
    error = _error_text(params.get("ErrorCode", "").strip(), params.get("ErrorMessage", ""))
    if raw not in STATUS_MAP:
        # queued, sending, accepted, scheduled, canceled: nothing to move forward.
        return InboundItem(
            provider_event_id=provider_event_id,
            kind="unsupported",
            data={**data, "status": raw},
        )
    data["status"] = STATUS_MAP[raw]
    if raw != data["status"]:
        data["provider_status"] = raw
    if error:
        data["error"] = error
    return InboundItem(provider_event_id=provider_event_id, kind="status", data=data)


def _api_error(response: httpx.Response, answer: dict[str, Any]) -> SendError:
    """A Messages API refusal with Twilio's ``code`` and ``message``, and whether to retry."""
    code, words = answer.get("code"), _str(answer.get("message"))
    text = f"HTTP {response.status_code}"
    if code is not None or words:
        text += f": (#{code}) {words}" if code is not None else f": {words}"
    else:
        text += f": {response.text[:500]}"
    retryable = response.status_code == 429 or response.status_code >= 500
    return SendError(
        text,
        retryable=retryable,
        provider_error=answer or response.text[:2000],
        retry_after=_retry_after(response) if retryable else None,
    )


def media_attachments(params: dict[str, str]) -> list[dict[str, Any]]:
    """``NumMedia`` / ``MediaUrl{N}`` / ``MediaContentType{N}`` as attachment metadata."""
    raw = params.get("NumMedia", "0").strip() or "0"
    if not raw.isdigit():
        raise _invalid("NumMedia")
    attachments: list[dict[str, Any]] = []
    for index in range(int(raw)):
        url = params.get(f"MediaUrl{index}", "")
        if not url:
            raise _invalid(f"MediaUrl{index}")
        mime_type = params.get(f"MediaContentType{index}", "")
        major = mime_type.partition("/")[0]
        attachments.append(
            {
                "type": major if major in ("image", "video", "audio") else "document",
                "url": url,
                "mime_type": mime_type,
                "media_id": urlsplit(url).path.rstrip("/").rpartition("/")[2],
            }
        )
    return attachments


_media = media_attachments
