"""WhatsApp Business: one channel type, through Meta's Cloud API or through Twilio.

Provider ``meta`` (Cloud API): ``POST /webhooks/whatsapp/{channel_id}`` with
``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw body)>``; one delivery may
batch several entries, changes, messages and statuses, for several phone numbers of the same
Meta app. Set-up: Meta's ``GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…``,
answered with the challenge. Outbound: ``POST {api_base_url}/{phone_number_id}/messages``
with the system-user token; the returned ``wamid`` is what later status webhooks name.
Media: ``GET {api_base_url}/{media-id}`` gives a short-lived URL, fetched with the same token.

Provider ``twilio``: Twilio's form webhooks with ``whatsapp:+E164`` addresses, see
:mod:`hilo.channels.whatsapp_twilio`.

What both share lives in :class:`WhatsAppChannel`: the customer is their WhatsApp id (their
phone number without ``+``) on every number of the workspace; templates come from the
channel's configuration; outside the 24-hour customer-service window only a template may be
sent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

import httpx

from hilo.channels.base import (
    ChannelContext,
    ChannelSetup,
    InboundItem,
    IngestResult,
    MediaError,
    MediaLocation,
    MessageTemplate,
    OutboundMessage,
    RawRequest,
    ReplyDraft,
    Sender,
    SendError,
    SendResult,
)
from hilo.channels.meta_messaging import answer_hub_challenge, verify_hub_signature
from hilo.channels.meta_messaging import sign as sign
from hilo.channels.whatsapp_twilio import TwilioWhatsApp
from hilo.crypto import new_secret
from hilo.errors import Conflict, InvalidPayload
from hilo.i18n import _

log = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://graph.facebook.com/v21.0"
# Meta's limit on a text message body, in characters, and on a media caption.
MAX_TEXT_CHARS = 4096
MAX_CAPTION_CHARS = 1024
# Free-form messages may be sent only this long after the customer's last message.
SERVICE_WINDOW = timedelta(hours=24)
# Graph error codes that mean "slow down", whatever the HTTP status they come with.
THROTTLED_CODES = frozenset({4, 80007, 130429, 131056})
REENGAGEMENT_CODE = 131047
MEDIA_TYPES = ("image", "video", "audio", "voice", "document", "sticker")
# What Meta can send as media by link, and which of them carry a caption.
OUTBOUND_MEDIA = ("image", "video", "audio", "document", "sticker")
CAPTIONED = ("image", "video", "document")
STATUS_MAP = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "played": "read",
    "failed": "failed",
}
# Template names as Meta accepts them; languages as ``es``, ``es_MX``, ``en_US``.
_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")
_PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")
_CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
MAX_TEMPLATES = 200

Json = dict[str, Any]


def _dict(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _sent_at(timestamp: Any) -> str | None:
    """Meta's Unix-seconds timestamp (a string) as ISO 8601 in UTC."""
    try:
        return datetime.fromtimestamp(int(timestamp), tz=UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _fingerprint(value: Any) -> str:
    """A stable id for something that has none, so redeliveries still collapse."""
    encoded = json.dumps(value, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]


def _error_text(errors: Any) -> str | None:
    """The first Graph error of a list, as ``(#code) title: details``."""
    first = _dict(next(iter(_list(errors)), None))
    if not first:
        return None
    title = _str(first.get("title")) or _str(first.get("message")) or "error"
    details = _str(_dict(first.get("error_data")).get("details"))
    text = f"(#{first['code']}) {title}" if first.get("code") is not None else title
    return f"{text}: {details}" if details and details != title else text


def _customer(wa_id: str, name: str | None) -> Sender:
    """A customer as WhatsApp names them: the wa_id is their phone, vouched for by WhatsApp."""
    return Sender(
        external_id=wa_id,
        name=name or None,
        phone=f"+{wa_id}" if wa_id.isdigit() else None,
        phone_verified=wa_id.isdigit(),
    )


class Provider(Protocol):
    """How one provider carries WhatsApp: its credentials, wire format and API."""

    def check_config(self, config: dict[str, Any]) -> tuple[Json, Json, list[str]]:
        """(config shown, secrets encrypted, names of the wrong fields)."""
        ...

    def handshake(self, request: RawRequest, channel: ChannelContext) -> tuple[int, str]: ...

    def verify(self, request: RawRequest, channel: ChannelContext) -> None: ...

    def parse_inbound(self, request: RawRequest, channel: ChannelContext) -> list[InboundItem]: ...

    async def send(
        self,
        client: httpx.AsyncClient,
        channel: ChannelContext,
        message: OutboundMessage,
        template: MessageTemplate | None,
    ) -> SendResult: ...

    async def media_location(
        self, client: httpx.AsyncClient, channel: ChannelContext, attachment: Mapping[str, Any]
    ) -> MediaLocation | None: ...


# -- the channel --------------------------------------------------------------------------------


class WhatsAppChannel:
    type: ClassVar[str] = "whatsapp"
    label: ClassVar[str] = "WhatsApp"
    setup_help: ClassVar[str] = _(
        "In Meta's developer console, open WhatsApp > Configuration, paste the webhook "
        "address as the callback URL with your verify token, and subscribe to messages. "
        "Through Twilio, paste it as the WhatsApp sender's webhook for incoming messages."
    )
    providers: ClassVar[tuple[str, ...]] = ("meta", "twilio")
    # A wa_id is the customer's phone number: the same person on every number we own.
    identity_kind: ClassVar[str] = "whatsapp"
    identity_scope: ClassVar[str] = "workspace"
    supports_opt_out: ClassVar[bool] = True

    def __init__(self) -> None:
        self._providers: dict[str, Provider] = {"meta": MetaCloudApi(), "twilio": TwilioWhatsApp()}

    def _provider(self, name: str) -> Provider:
        return self._providers[name]

    # -- set-up -------------------------------------------------------------------------

    def validate_config(self, provider: str, config: dict[str, Any]) -> ChannelSetup:
        shown, secrets, wrong = self._provider(provider).check_config(config)
        templates, template_problems = _check_templates(provider, config.get("templates"))
        wrong += template_problems
        if wrong:
            raise InvalidPayload(
                _("Invalid payload: check the fields {fields}."),
                code="invalid_config",
                fields=", ".join(f"config.{name}" for name in wrong),
            )
        return ChannelSetup(config={**shown, "templates": templates}, secrets=secrets)

    def handshake(self, request: RawRequest, channel: ChannelContext) -> tuple[int, str]:
        return self._provider(channel.provider).handshake(request, channel)

    # -- inbound ------------------------------------------------------------------------

    def verify(self, request: RawRequest, channel: ChannelContext) -> None:
        self._provider(channel.provider).verify(request, channel)

    def parse_inbound(self, request: RawRequest, channel: ChannelContext) -> list[InboundItem]:
        return self._provider(channel.provider).parse_inbound(request, channel)

    def acknowledge(self, results: list[IngestResult]) -> tuple[int, Any]:
        # Twilio's items carry the TwiML it expects; Meta needs only a 2xx, also for a
        # delivery that held nothing for this workspace.
        answers = [r.answer for r in results if r.answer]
        return (200, answers[0]) if answers else (200, {"ok": True})

    def account(self, provider: str, config: Mapping[str, Any]) -> str:
        """The Meta phone number id a channel stands for (Twilio sends one number per URL)."""
        return _str(config.get("phone_number_id")) if provider == "meta" else ""

    async def media_location(
        self, client: httpx.AsyncClient, channel: ChannelContext, attachment: Mapping[str, Any]
    ) -> MediaLocation | None:
        return await self._provider(channel.provider).media_location(client, channel, attachment)

    # -- outbound -----------------------------------------------------------------------

    def templates(self, channel: ChannelContext) -> list[MessageTemplate]:
        return [
            MessageTemplate(
                name=_str(t.get("name")),
                language=_str(t.get("language")),
                body=_str(t.get("body")),
                params=int(t.get("params") or 0),
                provider_id=_str(t.get("content_sid")) or None,
            )
            for t in _list(channel.config.get("templates"))
            if isinstance(t, dict)
        ]

    def check_send(self, channel: ChannelContext, draft: ReplyDraft) -> None:
        """Outside the 24-hour window only templates; one file per message, captioned."""
        if draft.template is None and (
            draft.last_inbound_at is None or draft.at - draft.last_inbound_at > SERVICE_WINDOW
        ):
            raise Conflict(
                _(
                    "The customer has not written on this WhatsApp number in the last 24 "
                    "hours: only a template can be sent."
                ),
                code="whatsapp_window_closed",
            )
        if not draft.attachments:
            return
        kind = _outbound_kind(draft.attachments[0])
        if (
            draft.template is not None
            or len(draft.attachments) > 1
            or len(draft.text) > MAX_CAPTION_CHARS
            or (draft.text.strip() and kind not in CAPTIONED)
        ):
            raise InvalidPayload(
                _(
                    "WhatsApp sends one file per message, with a caption of at most 1024 "
                    "characters (none for audio and stickers), and templates without files."
                ),
                code="whatsapp_media_rules",
            )

    async def send(
        self, client: httpx.AsyncClient, channel: ChannelContext, message: OutboundMessage
    ) -> SendResult:
        template = None
        chosen = _dict(message.data.get("template"))
        if chosen:
            name, language = _str(chosen.get("name")), _str(chosen.get("language"))
            template = next(
                (t for t in self.templates(channel) if (t.name, t.language) == (name, language)),
                None,
            )
            if template is None:
                raise SendError(
                    f"the template {name} ({language}) is no longer in the channel's list",
                    retryable=False,
                )
        return await self._provider(channel.provider).send(client, channel, message, template)


def _outbound_kind(attachment: Mapping[str, Any]) -> str:
    """What WhatsApp calls a file we send: image, video, audio, sticker or document."""
    mime_type = _str(attachment.get("mime_type"))
    if mime_type in ("image/jpeg", "image/png"):
        return "image"
    if mime_type == "image/webp":
        return "sticker"
    if mime_type.startswith("video/"):
        return "video"
    if mime_type.startswith("audio/"):
        return "audio"
    return "document"


def _check_templates(provider: str, raw: Any) -> tuple[list[Json], list[str]]:
    """The configured templates, normalised (with their parameter count), and what is wrong.

    Each is ``{"name", "language", "body"}`` (``{{1}}``… for its values); Twilio's also need
    the ``content_sid`` (``HX…``) of the approved content template.
    """
    if raw is None:
        return [], []
    if not isinstance(raw, list) or len(raw) > MAX_TEMPLATES:
        return [], ["templates"]
    templates: list[Json] = []
    wrong: list[str] = []
    seen: set[tuple[str, str]] = set()
    for index, entry in enumerate(raw):
        entry = _dict(entry)
        name, language = _str(entry.get("name")).strip(), _str(entry.get("language")).strip()
        body = _str(entry.get("body"))
        numbers = sorted({int(n) for n in _PLACEHOLDER.findall(body)})
        problems = [
            not _TEMPLATE_NAME.match(name),
            not _LANGUAGE.match(language),
            not body.strip() or len(body) > MAX_TEXT_CHARS,
            numbers != list(range(1, len(numbers) + 1)),
            (name, language) in seen,
        ]
        template: Json = {"name": name, "language": language, "body": body, "params": len(numbers)}
        if provider == "twilio":
            content_sid = _str(entry.get("content_sid")).strip()
            problems.append(not _CONTENT_SID.match(content_sid))
            template["content_sid"] = content_sid
        if any(problems):
            wrong.append(f"templates[{index}]")
        seen.add((name, language))
        templates.append(template)
    return templates, wrong


# -- Meta's Cloud API ---------------------------------------------------------------------------


class MetaCloudApi:
    """WhatsApp through Meta's Cloud API (provider ``meta``)."""

    def check_config(self, config: dict[str, Any]) -> tuple[Json, Json, list[str]]:
        missing = [
            name
            for name in ("phone_number_id", "app_secret", "access_token")
            if not _str(config.get(name)).strip()
        ]
        phone_number_id = _str(config.get("phone_number_id")).strip()
        if phone_number_id and not phone_number_id.isdigit():
            missing.append("phone_number_id")
        base = _str(config.get("api_base_url")).strip() or DEFAULT_API_BASE_URL
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            missing.append("api_base_url")
        shown = {"phone_number_id": phone_number_id, "api_base_url": base.rstrip("/")}
        secrets = {
            "app_secret": _str(config.get("app_secret")).strip(),
            "access_token": _str(config.get("access_token")).strip(),
            # Pasted into Meta's console next to the webhook URL; ours unless given.
            "verify_token": _str(config.get("verify_token")).strip() or new_secret(24),
        }
        return shown, secrets, missing

    def handshake(self, request: RawRequest, channel: ChannelContext) -> tuple[int, str]:
        return answer_hub_challenge(request, _str(channel.secrets.get("verify_token")))

    def verify(self, request: RawRequest, channel: ChannelContext) -> None:
        verify_hub_signature(request, _str(channel.secrets.get("app_secret")))

    def parse_inbound(self, request: RawRequest, channel: ChannelContext) -> list[InboundItem]:
        try:
            payload = json.loads(request.body)
        except ValueError as exc:
            raise InvalidPayload() from exc
        if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
            raise InvalidPayload(_("Invalid payload: check the fields {fields}."), fields="object")
        entries = payload.get("entry")
        if not isinstance(entries, list):
            raise InvalidPayload(_("Invalid payload: check the fields {fields}."), fields="entry")
        items: list[InboundItem] = []
        for entry in entries:
            for change in _list(_dict(entry).get("changes")):
                change = _dict(change)
                value = _dict(change.get("value"))
                if change.get("field", "messages") != "messages":
                    continue
                number = _str(_dict(value.get("metadata")).get("phone_number_id"))
                if not number:
                    log.info("whatsapp change without a phone number id on %s", channel.id)
                    continue
                for item in self._value_items(value):
                    # The flow stores it on the channel of that number (several numbers of one
                    # Meta app share the callback).
                    item.account = number
                    items.append(item)
                for error in _list(value.get("errors")):
                    log.warning(
                        "whatsapp reported an error on channel %s: %s",
                        channel.id,
                        _error_text([error]),
                    )
        return items

    def _value_items(self, value: Json) -> list[InboundItem]:
        names: dict[str, Json] = {}
        for contact in _list(value.get("contacts")):
            contact = _dict(contact)
            for key in ("wa_id", "user_id"):
                if contact.get(key):
                    names[_str(contact[key])] = contact
        items = [self._message(_dict(m), names) for m in _list(value.get("messages"))]
        items += [self._status(_dict(s)) for s in _list(value.get("statuses"))]
        return items

    def _message(self, message: Json, contacts: dict[str, Json]) -> InboundItem:
        wamid = _str(message.get("id"))
        wa_id = _str(message.get("from"))
        if not wamid or not wa_id:
            # Nothing to key it on: keep it for the trail under a stable fingerprint.
            return InboundItem(
                provider_event_id=f"malformed:{_fingerprint(message)}",
                kind="unsupported",
                data={"reason": "message without id or from"},
            )
        contact = contacts.get(wa_id, {})
        item = InboundItem(
            provider_event_id=wamid,
            kind="message",
            sender=_customer(wa_id, _str(_dict(contact.get("profile")).get("name"))),
            sent_at=_sent_at(message.get("timestamp")),
            data={"type": _str(message.get("type"))},
        )
        if contact.get("user_id"):
            item.data["user_id"] = _str(contact["user_id"])
        context = _dict(message.get("context"))
        if context.get("id"):
            item.data["reply_to"] = _str(context["id"])
        if context.get("forwarded") or context.get("frequently_forwarded"):
            item.data["forwarded"] = True
        if message.get("referral"):
            item.data["referral"] = _dict(message["referral"])
        self._fill(item, message)
        return item

    def _fill(self, item: InboundItem, message: Json) -> None:
        """Text, attachments and data for one message, by its type."""
        kind = _str(message.get("type"))
        body = _dict(message.get(kind))
        if kind == "text":
            item.text = _str(body.get("body"))
        elif kind in MEDIA_TYPES:
            item.text = _str(body.get("caption"))
            attachment: Json = {
                "type": kind,
                "media_id": _str(body.get("id")),
                "mime_type": _str(body.get("mime_type")),
                "sha256": _str(body.get("sha256")),
                "caption": _str(body.get("caption")) or None,
                # Downloaded right after the message lands (the media.fetch job).
                "status": "pending",
            }
            if body.get("filename"):
                attachment["filename"] = _str(body["filename"])
            if body.get("voice") is True:
                attachment["voice"] = True
            item.attachments.append(attachment)
        elif kind == "location":
            latitude, longitude = body.get("latitude"), body.get("longitude")
            parts = [
                f"📍 {latitude},{longitude}",
                _str(body.get("name")),
                _str(body.get("address")),
            ]
            item.text = " ".join(p for p in parts if p)
            item.data["location"] = body
        elif kind == "interactive":
            reply_type = _str(body.get("type"))
            reply = _dict(body.get(reply_type))
            if reply_type in ("button_reply", "list_reply") and reply:
                item.text = _str(reply.get("title"))
                item.data.update(payload=_str(reply.get("id")), reply_type=reply_type)
                if reply.get("description"):
                    item.data["description"] = _str(reply["description"])
            else:
                item.kind = "unsupported"
        elif kind == "button":
            item.text = _str(body.get("text"))
            item.data.update(payload=_str(body.get("payload")), reply_type="button")
        elif kind == "reaction":
            emoji = _str(body.get("emoji"))
            item.data["reaction_to"] = _str(body.get("message_id"))
            if emoji:
                item.text = emoji
            else:
                # The customer took a reaction back: nothing to show as a message.
                item.kind = "unsupported"
        elif kind == "contacts":
            shared = [_dict(c) for c in _list(message.get("contacts"))]
            item.text = "; ".join(_contact_summary(c) for c in shared)
            item.data["contacts"] = shared
        elif kind == "order":
            products = [_dict(p) for p in _list(body.get("product_items"))]
            lines = [
                f"{p.get('quantity')} × {p.get('product_retailer_id')} "
                f"({p.get('item_price')} {p.get('currency')})"
                for p in products
            ]
            note = _str(body.get("text"))
            item.text = "🛒 " + "; ".join(lines) + (f" — {note}" if note else "")
            item.data["order"] = body
        elif kind == "edit":
            original = _str(body.get("original_message_id"))
            edited = _dict(body.get("message"))
            edited_body = _dict(edited.get(_str(edited.get("type"))))
            text = edited_body.get("body", edited_body.get("caption"))
            if original and isinstance(text, str):
                item.kind = "edit"
                item.text = text
                item.data["provider_message_id"] = original
            else:
                item.kind = "unsupported"
        elif kind == "system" and body.get("type") == "user_changed_number" and body.get("wa_id"):
            # The customer moved their WhatsApp account to another number: that number
            # joins the same contact, and replies go to it.
            item.kind = "identity"
            item.data["system"] = body
            name = item.sender.name if item.sender else None
            item.data["new_sender"] = asdict(_customer(_str(body["wa_id"]), name))
        else:
            # unsupported, system (identity change) and new types: kept for the trail.
            item.kind = "unsupported"
            if kind == "system":
                item.data["system"] = body
            errors = _error_text(message.get("errors"))
            if errors:
                item.data["error"] = errors

    def _status(self, status: Json) -> InboundItem:
        wamid = _str(status.get("id"))
        raw = _str(status.get("status"))
        if not wamid or raw not in STATUS_MAP:
            return InboundItem(
                provider_event_id=f"status:{wamid}:{raw}:{_fingerprint(status)}",
                kind="unsupported",
                data={"status": raw, "provider_message_id": wamid},
            )
        data: Json = {"provider_message_id": wamid, "status": STATUS_MAP[raw]}
        error = _error_text(status.get("errors"))
        if error:
            data["error"] = error
        if status.get("biz_opaque_callback_data"):
            data["callback_data"] = _str(status["biz_opaque_callback_data"])
        return InboundItem(
            provider_event_id=f"{wamid}:{raw}",
            kind="status",
            sent_at=_sent_at(status.get("timestamp")),
            data=data,
        )

    # -- outbound -----------------------------------------------------------------------

    def _api(self, channel: ChannelContext) -> tuple[str, dict[str, str]]:
        base = _str(channel.config.get("api_base_url")) or DEFAULT_API_BASE_URL
        headers = {"Authorization": f"Bearer {channel.secrets['access_token']}"}
        return base.rstrip("/"), headers

    async def send(
        self,
        client: httpx.AsyncClient,
        channel: ChannelContext,
        message: OutboundMessage,
        template: MessageTemplate | None,
    ) -> SendResult:
        base, headers = self._api(channel)
        body: Json = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.recipient,
            **_content(message, template),
            # Echoed back in status webhooks: our id, whatever happens to the wamid.
            "biz_opaque_callback_data": str(message.message_id),
        }
        try:
            response = await client.post(
                f"{base}/{channel.config['phone_number_id']}/messages", json=body, headers=headers
            )
        except httpx.HTTPError as exc:
            raise SendError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        answer = _json(response)
        if response.is_success:
            messages = _list(_dict(answer).get("messages"))
            wamid = _str(_dict(messages[0]).get("id")) if messages else ""
            if not wamid:
                raise SendError(
                    f"HTTP {response.status_code} without a message id: {response.text[:300]}",
                    retryable=False,
                    provider_error=response.text[:2000],
                )
            return SendResult(provider_message_id=wamid)
        raise _graph_error(response, answer)

    async def media_location(
        self, client: httpx.AsyncClient, channel: ChannelContext, attachment: Mapping[str, Any]
    ) -> MediaLocation | None:
        """``GET /{media-id}``: the file's short-lived URL, fetched with the same token."""
        media_id = _str(attachment.get("media_id"))
        if not media_id.isdigit():
            return None
        base, headers = self._api(channel)
        try:
            response = await client.get(f"{base}/{media_id}", headers=headers)
        except httpx.HTTPError as exc:
            raise MediaError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        answer = _dict(_json(response))
        if not response.is_success:
            error = _graph_error(response, answer)
            raise MediaError(str(error), retryable=error.retryable)
        url = _str(answer.get("url"))
        if urlsplit(url).scheme not in ("http", "https"):
            raise MediaError("Graph answered without the file's url", retryable=False)
        size = answer.get("file_size")
        return MediaLocation(
            url=url,
            headers=headers,
            size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
            mime_type=_str(answer.get("mime_type")) or None,
        )


def _content(message: OutboundMessage, template: MessageTemplate | None) -> Json:
    """The ``type`` and its object: a template, a file by link, or text."""
    if template is not None:
        values = [_str(v) for v in _list(_dict(message.data.get("template")).get("params"))]
        sent: Json = {"name": template.name, "language": {"code": template.language}}
        if values:
            sent["components"] = [
                {"type": "body", "parameters": [{"type": "text", "text": v} for v in values]}
            ]
        return {"type": "template", "template": sent}
    if message.attachments:
        attachment = message.attachments[0]
        kind = _outbound_kind(attachment)
        media: Json = {"link": _str(attachment.get("link"))}
        if message.text.strip() and kind in CAPTIONED:
            media["caption"] = message.text
        if kind == "document" and attachment.get("filename"):
            media["filename"] = _str(attachment["filename"])
        return {"type": kind, kind: media}
    if len(message.text) > MAX_TEXT_CHARS:
        raise SendError(
            f"the text has {len(message.text)} characters; "
            f"WhatsApp allows {MAX_TEXT_CHARS} in one message",
            retryable=False,
        )
    return {"type": "text", "text": {"body": message.text, "preview_url": False}}


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _graph_error(response: httpx.Response, answer: Any) -> SendError:
    """A Graph API refusal, with Meta's own words, and whether trying again can help."""
    error = _dict(_dict(answer).get("error"))
    code = error.get("code")
    text = f"HTTP {response.status_code}"
    if error:
        details = _str(_dict(error.get("error_data")).get("details"))
        text += f": (#{code}) {_str(error.get('message'))}"
        if details:
            text += f": {details}"
    else:
        text += f": {response.text[:500]}"
    if code == REENGAGEMENT_CODE:
        text += " (the 24-hour customer-service window is closed: a template is needed)"
    retryable = (
        response.status_code >= 500
        or response.status_code in (408, 429)
        or code in THROTTLED_CODES
        or error.get("is_transient") is True
    ) and code != REENGAGEMENT_CODE
    return SendError(text, retryable=retryable, provider_error=error or response.text[:2000])


def _contact_summary(contact: Json) -> str:
    name = _dict(contact.get("name"))
    label = _str(name.get("formatted_name")) or " ".join(
        _str(name.get(k)) for k in ("first_name", "last_name") if name.get(k)
    )
    phones = [_str(_dict(p).get("phone")) for p in _list(contact.get("phones"))]
    phones = [p for p in phones if p]
    label = "👤 " + (label or "?")
    return f"{label} ({', '.join(phones)})" if phones else label
