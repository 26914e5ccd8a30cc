"""WhatsApp Business Cloud API (Meta): webhooks in, Graph API ``/messages`` out.

Inbound: ``POST /webhooks/whatsapp/{channel_id}`` with
``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw body)>``; one delivery may
batch several entries, changes, messages and statuses. Set-up: Meta's
``GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…``, answered with the challenge.
Outbound: ``POST {api_base_url}/{phone_number_id}/messages`` with the system-user token;
the returned ``wamid`` is what later status webhooks name.

Only changes for this channel's ``phone_number_id`` are taken: one Meta app subscribed for
several numbers sends every number's traffic to every callback it knows, and the other
numbers' changes belong to other channels.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
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
from hilo.crypto import constant_time_equal, hmac_sha256_hex, new_secret
from hilo.errors import Forbidden, InvalidPayload, InvalidSignature
from hilo.i18n import _

log = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://graph.facebook.com/v21.0"
# Meta's limit on a text message body, in characters.
MAX_TEXT_CHARS = 4096
# Graph error codes that mean "slow down", whatever the HTTP status they come with.
THROTTLED_CODES = frozenset({4, 80007, 130429, 131056})
REENGAGEMENT_CODE = 131047
MEDIA_TYPES = ("image", "video", "audio", "voice", "document", "sticker")
STATUS_MAP = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "played": "read",
    "failed": "failed",
}

Json = dict[str, Any]


def sign(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``body``."""
    return "sha256=" + hmac_sha256_hex(app_secret, body)


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


class WhatsAppChannel:
    type: ClassVar[str] = "whatsapp"
    providers: ClassVar[tuple[str, ...]] = ("meta",)
    # A wa_id is the customer's phone number: the same person on every number we own.
    identity_kind: ClassVar[str] = "whatsapp"
    identity_scope: ClassVar[str] = "workspace"
    supports_opt_out: ClassVar[bool] = True

    # -- set-up -------------------------------------------------------------------------

    def validate_config(self, provider: str, config: dict[str, Any]) -> ChannelSetup:
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
        if missing:
            raise InvalidPayload(
                _("Invalid payload: check the fields {fields}."),
                code="invalid_config",
                fields=", ".join(f"config.{name}" for name in missing),
            )
        return ChannelSetup(
            config={"phone_number_id": phone_number_id, "api_base_url": base.rstrip("/")},
            secrets={
                "app_secret": _str(config["app_secret"]).strip(),
                "access_token": _str(config["access_token"]).strip(),
                # Pasted into Meta's console next to the webhook URL; ours unless given.
                "verify_token": _str(config.get("verify_token")).strip() or new_secret(24),
            },
        )

    def handshake(self, request: RawRequest, channel: ChannelContext) -> tuple[int, str]:
        token = request.query.get("hub.verify_token", "")
        expected = _str(channel.secrets.get("verify_token"))
        if (
            request.query.get("hub.mode") != "subscribe"
            or not expected
            or not constant_time_equal(token, expected)
        ):
            raise Forbidden(code="invalid_verify_token")
        return 200, request.query.get("hub.challenge", "")[:256]

    # -- inbound ------------------------------------------------------------------------

    def verify(self, request: RawRequest, channel: ChannelContext) -> None:
        signature = request.headers.get("x-hub-signature-256", "").strip()
        secret = _str(channel.secrets.get("app_secret"))
        if not signature or not secret:
            raise InvalidSignature()
        expected = sign(secret, request.body)
        if not constant_time_equal(expected, signature.lower()):
            raise InvalidSignature()

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
        ours = _str(channel.config.get("phone_number_id"))
        items: list[InboundItem] = []
        for entry in entries:
            for change in _list(_dict(entry).get("changes")):
                change = _dict(change)
                value = _dict(change.get("value"))
                if change.get("field", "messages") != "messages":
                    continue
                number = _str(_dict(value.get("metadata")).get("phone_number_id"))
                if number != ours:
                    log.info(
                        "whatsapp change for phone number id %s ignored on channel %s",
                        number or "?",
                        channel.id,
                    )
                    continue
                items.extend(self._value_items(value))
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
        sender = Sender(
            external_id=wa_id,
            name=_str(_dict(contact.get("profile")).get("name")) or None,
            # Meta vouches for the number: a wa_id is the phone the account is registered on.
            phone=f"+{wa_id}" if wa_id.isdigit() else None,
            phone_verified=wa_id.isdigit(),
        )
        item = InboundItem(
            provider_event_id=wamid,
            kind="message",
            sender=sender,
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
        else:
            # unsupported, system (user_changed_number, identity change) and new types.
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

    def acknowledge(self, results: list[IngestResult]) -> tuple[int, Any]:
        # Meta needs only a 2xx, also for a delivery that held nothing for this channel.
        return 200, {"ok": True}

    # -- outbound -----------------------------------------------------------------------

    async def send(
        self, client: httpx.AsyncClient, channel: ChannelContext, message: OutboundMessage
    ) -> SendResult:
        if len(message.text) > MAX_TEXT_CHARS:
            raise SendError(
                f"the text has {len(message.text)} characters; "
                f"WhatsApp allows {MAX_TEXT_CHARS} in one message",
                retryable=False,
            )
        base = _str(channel.config.get("api_base_url")) or DEFAULT_API_BASE_URL
        url = f"{base.rstrip('/')}/{channel.config['phone_number_id']}/messages"
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.recipient,
            "type": "text",
            "text": {"body": message.text, "preview_url": False},
            # Echoed back in status webhooks: our id, whatever happens to the wamid.
            "biz_opaque_callback_data": str(message.message_id),
        }
        headers = {"Authorization": f"Bearer {channel.secrets['access_token']}"}
        try:
            response = await client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SendError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        try:
            answer = response.json()
        except ValueError:
            answer = None
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
