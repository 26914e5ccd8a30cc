"""Telegram bots through the Bot API: webhook updates in, ``sendMessage`` out.

Inbound: Telegram POSTs one ``Update`` per request to ``/webhooks/telegram/{channel_id}``
with ``X-Telegram-Bot-Api-Secret-Token`` set to the ``secret_token`` given to ``setWebhook``.
There is no HMAC over the body and no GET set-up check.
Outbound: ``POST {api_base_url}/bot{bot_token}/sendMessage``; replies longer than Telegram's
4096-character limit go out as several messages. Bots get no delivery or read receipts.

Only private chats are customers: a group or channel is not one person, so its updates are
kept for the trail and nothing else happens.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hilo.channels.base import (
    ChannelContext,
    ChannelSetup,
    InboundItem,
    IngestResult,
    NoSetupCheck,
    OutboundMessage,
    RawRequest,
    Sender,
    SendError,
    SendResult,
)
from hilo.crypto import constant_time_equal, new_secret
from hilo.errors import InvalidPayload, InvalidSignature
from hilo.i18n import _

log = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://api.telegram.org"
SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 - a header name
# Telegram counts message length in UTF-16 code units (as its entity offsets do).
MAX_TEXT = 4096
# A part after the first of a long reply is retried here rather than by the job: retrying
# the whole reply would send the customer the parts already delivered a second time.
PART_ATTEMPTS = 3
MAX_PART_WAIT_SECONDS = 10.0

_BOT_TOKEN = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{1,200}$")
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_TOKEN_IN_URL = re.compile(r"/bot[0-9]+:[A-Za-z0-9_-]+")
_NUMERIC_CHAT = re.compile(r"^-?[0-9]+$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _User(_Model):
    id: int
    is_bot: bool = False
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None


class _Chat(_Model):
    id: int
    type: str


class _PhotoSize(_Model):
    file_id: str
    file_unique_id: str | None = None
    file_size: int | None = None
    width: int | None = None
    height: int | None = None


class _File(_Model):
    file_id: str
    file_unique_id: str | None = None
    file_name: str | None = None
    mime_type: str | None = None
    file_size: int | None = None


class _Contact(_Model):
    phone_number: str
    first_name: str = ""
    last_name: str | None = None
    user_id: int | None = None


class _Location(_Model):
    latitude: float
    longitude: float


class _MessageRef(_Model):
    message_id: int


class _Message(_Model):
    message_id: int
    from_: _User | None = Field(default=None, alias="from")
    chat: _Chat
    date: int
    text: str | None = None
    caption: str | None = None
    photo: list[_PhotoSize] = Field(default_factory=list)
    document: _File | None = None
    audio: _File | None = None
    voice: _File | None = None
    video: _File | None = None
    video_note: _File | None = None
    animation: _File | None = None
    sticker: _File | None = None
    contact: _Contact | None = None
    location: _Location | None = None
    reply_to_message: _MessageRef | None = None
    media_group_id: str | None = None


class _CallbackMessage(_Model):
    """The message a button belongs to (possibly an "inaccessible" stub: id and chat only)."""

    message_id: int
    chat: _Chat


class _CallbackQuery(_Model):
    id: str = Field(min_length=1)
    from_: _User = Field(alias="from")
    data: str | None = None
    message: _CallbackMessage | None = None


class _Update(_Model):
    # Extra fields kept: the name of an update type we do not handle goes in the trail.
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    update_id: int
    message: _Message | None = None
    edited_message: _Message | None = None
    callback_query: _CallbackQuery | None = None


# The media a message can carry, besides photos, in the order they are looked at. An
# animation also fills ``document`` for old clients, so it comes first and wins.
_FILE_FIELDS = ("animation", "document", "audio", "voice", "video", "video_note", "sticker")


def utf16_len(text: str) -> int:
    """The length Telegram counts: characters outside the BMP take two units."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """``text`` cut into parts Telegram accepts, at a line break or space when one is near.

    The parts joined give ``text`` back; whitespace-only parts (which Telegram refuses)
    are dropped.
    """
    parts: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        cut, units = 0, 0
        for char in rest:
            units += 2 if ord(char) > 0xFFFF else 1
            if units > limit:
                break
            cut += 1
        window = rest[:cut]
        brk = window.rfind("\n")
        if brk < cut // 2:
            brk = window.rfind(" ")
        if brk >= cut // 2:
            cut = brk + 1
        parts.append(rest[:cut])
        rest = rest[cut:]
    parts.append(rest)
    return [p for p in parts if p.strip()] or parts[:1]


def _name(user: _User) -> str | None:
    full = " ".join(p for p in (user.first_name, user.last_name) if p).strip()
    return full or user.username or None


def _sent_at(unix: int) -> str | None:
    return datetime.fromtimestamp(unix, tz=UTC).isoformat() if unix > 0 else None


def _attachments(message: _Message) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if message.photo:
        # Telegram sends every size it made; the largest is last. Photos are JPEG.
        photo = message.photo[-1]
        found.append(
            {
                "type": "photo",
                "file_id": photo.file_id,
                "file_unique_id": photo.file_unique_id,
                "mime_type": "image/jpeg",
                "size": photo.file_size,
                "width": photo.width,
                "height": photo.height,
            }
        )
    for field in _FILE_FIELDS:
        file: _File | None = getattr(message, field)
        if file is None or (field == "document" and message.animation is not None):
            continue
        found.append(
            {
                "type": field,
                "file_id": file.file_id,
                "file_unique_id": file.file_unique_id,
                "file_name": file.file_name,
                "mime_type": file.mime_type,
                "size": file.file_size,
            }
        )
    if message.contact is not None:
        contact = message.contact
        found.append(
            {
                "type": "contact",
                "phone_number": contact.phone_number,
                "name": " ".join(p for p in (contact.first_name, contact.last_name) if p),
                "user_id": contact.user_id,
            }
        )
    if message.location is not None:
        found.append(
            {
                "type": "location",
                "latitude": message.location.latitude,
                "longitude": message.location.longitude,
            }
        )
    if message.media_group_id and found:
        for attachment in found:
            attachment["media_group_id"] = message.media_group_id
    return found


def _unsupported(update: _Update, what: str) -> InboundItem:
    return InboundItem(
        provider_event_id=f"update:{update.update_id}", kind="unsupported", data={"type": what}
    )


def _redact(text: str, token: str) -> str:
    return _TOKEN_IN_URL.sub("/bot<redacted>", text.replace(token, "<redacted>") if token else text)


class TelegramChannel(NoSetupCheck):
    type: ClassVar[str] = "telegram"
    label: ClassVar[str] = "Telegram"
    setup_help: ClassVar[str] = _(
        "Register the webhook address with Telegram's setWebhook, passing the channel's secret "
        "token as secret_token: Telegram then sends it with every update."
    )
    providers: ClassVar[tuple[str, ...]] = ("telegram",)
    identity_kind: ClassVar[str] = "telegram"
    # A user id means one thing to one bot: each bot is its own channel.
    identity_scope: ClassVar[str] = "channel"
    supports_opt_out: ClassVar[bool] = True

    def validate_config(self, provider: str, config: dict[str, Any]) -> ChannelSetup:
        bot_token = config.get("bot_token")
        if not isinstance(bot_token, str) or not _BOT_TOKEN.match(bot_token.strip()):
            raise InvalidPayload(
                _("bot_token must be the token BotFather gave the bot, like 123456:ABC-DEF."),
                code="invalid_config",
            )
        secret_token = config.get("secret_token")
        if secret_token is None or secret_token == "":
            secret_token = new_secret()
        elif not isinstance(secret_token, str) or not _SECRET_TOKEN.match(secret_token):
            raise InvalidPayload(
                _("secret_token must be 1 to 256 characters from A-Z, a-z, 0-9, _ and -."),
                code="invalid_config",
            )
        public: dict[str, Any] = {}
        base = config.get("api_base_url")
        if base is not None and base != "":
            parts = urlsplit(str(base))
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InvalidPayload(
                    _("api_base_url must be an http or https URL."), code="invalid_config"
                )
            public["api_base_url"] = str(base).rstrip("/")
        return ChannelSetup(
            config=public, secrets={"bot_token": bot_token.strip(), "secret_token": secret_token}
        )

    def verify(self, request: RawRequest, channel: ChannelContext) -> None:
        given = request.headers.get(SECRET_HEADER, "")
        expected = str(channel.secrets.get("secret_token") or "")
        if not given or not expected or not constant_time_equal(expected, given):
            raise InvalidSignature()

    def parse_inbound(self, request: RawRequest, channel: ChannelContext) -> list[InboundItem]:
        try:
            update = _Update.model_validate_json(request.body)
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()})
            raise InvalidPayload(
                _("Invalid payload: check the fields {fields}."), fields=", ".join(fields)
            ) from exc
        item = self._item(update)
        log.debug("telegram update %s on channel %s: %s", update.update_id, channel.id, item.kind)
        return [item]

    def _item(self, update: _Update) -> InboundItem:
        if update.message is not None:
            return self._message(update, update.message)
        if update.edited_message is not None:
            return self._edit(update, update.edited_message)
        if update.callback_query is not None:
            return self._callback(update, update.callback_query)
        return _unsupported(update, next(iter(update.model_extra or {}), "empty"))

    def _message(self, update: _Update, message: _Message) -> InboundItem:
        user = message.from_
        if message.chat.type != "private" or user is None:
            return _unsupported(update, f"message:{message.chat.type}")
        text = message.text if message.text is not None else (message.caption or "")
        attachments = _attachments(message)
        if not text and not attachments:
            return _unsupported(update, "message:no_content")
        # Only a contact the user shares of themself vouches for their phone number.
        own = message.contact if message.contact and message.contact.user_id == user.id else None
        data: dict[str, Any] = {"chat_id": message.chat.id, "message_id": message.message_id}
        if message.reply_to_message is not None:
            data["reply_to_provider_message_id"] = (
                f"{message.chat.id}:{message.reply_to_message.message_id}"
            )
            data["reply_to_message_id"] = message.reply_to_message.message_id
        return InboundItem(
            # The message's own key, so a redelivered update is the same message.
            provider_event_id=f"{message.chat.id}:{message.message_id}",
            kind="message",
            sender=Sender(
                external_id=str(message.chat.id),
                name=_name(user),
                phone=own.phone_number if own else None,
                phone_verified=own is not None,
            ),
            text=text,
            attachments=attachments,
            sent_at=_sent_at(message.date),
            data=data,
        )

    def _edit(self, update: _Update, message: _Message) -> InboundItem:
        if message.chat.type != "private" or message.from_ is None:
            return _unsupported(update, f"edited_message:{message.chat.type}")
        return InboundItem(
            provider_event_id=f"edit:{update.update_id}",
            kind="edit",
            sender=Sender(external_id=str(message.chat.id), name=_name(message.from_)),
            text=message.text if message.text is not None else (message.caption or ""),
            data={"provider_message_id": f"{message.chat.id}:{message.message_id}"},
        )

    def _callback(self, update: _Update, query: _CallbackQuery) -> InboundItem:
        chat = query.message.chat if query.message is not None else None
        if query.data is None or (chat is not None and chat.type != "private"):
            return _unsupported(update, "callback_query")
        data: dict[str, Any] = {"callback_query_id": query.id, "callback_data": query.data}
        if query.message is not None:
            data["button_message_id"] = f"{query.message.chat.id}:{query.message.message_id}"
        return InboundItem(
            provider_event_id=f"cbq:{query.id}",
            kind="message",
            # In a private chat the chat id is the user's id.
            sender=Sender(external_id=str(query.from_.id), name=_name(query.from_)),
            text=query.data,
            data=data,
        )

    def acknowledge(self, results: list[IngestResult]) -> tuple[int, Any]:
        body: dict[str, Any] = {"ok": True}
        for result in results:
            if result.provider_event_id.startswith("cbq:"):
                # Answering in the webhook response stops the button's loading spinner.
                body["method"] = "answerCallbackQuery"
                body["callback_query_id"] = result.provider_event_id.removeprefix("cbq:")
        return 200, body

    async def send(
        self, client: httpx.AsyncClient, channel: ChannelContext, message: OutboundMessage
    ) -> SendResult:
        token = str(channel.secrets.get("bot_token") or "")
        if not token:
            raise SendError("the channel has no bot_token", retryable=False)
        base = str(channel.config.get("api_base_url") or DEFAULT_API_BASE_URL).rstrip("/")
        url = f"{base}/bot{token}/sendMessage"
        recipient = message.recipient
        chat_id: int | str = int(recipient) if _NUMERIC_CHAT.match(recipient) else recipient
        parts = split_text(message.text)
        first_id: int | None = None
        for index, part in enumerate(parts):
            if index == 0:
                first_id = await self._send_part(client, url, token, chat_id, part)
                continue
            try:
                await self._send_part_patiently(client, url, token, chat_id, part)
            except SendError as exc:
                raise SendError(
                    f"part {index + 1} of {len(parts)} failed after {index} were delivered: {exc}",
                    retryable=False,
                    provider_error=exc.provider_error,
                ) from exc
        log.info("telegram reply %s sent in %d part(s)", message.message_id, len(parts))
        return SendResult(
            provider_message_id=f"{recipient}:{first_id}" if first_id is not None else None
        )

    async def _send_part_patiently(
        self, client: httpx.AsyncClient, url: str, token: str, chat_id: int | str, text: str
    ) -> int | None:
        for attempt in range(1, PART_ATTEMPTS + 1):
            try:
                return await self._send_part(client, url, token, chat_id, text)
            except SendError as exc:
                if not exc.retryable or attempt == PART_ATTEMPTS:
                    raise
                retry_after = (exc.provider_error or {}).get("retry_after")
                wait = float(retry_after) if isinstance(retry_after, int | float) else attempt
                await asyncio.sleep(min(max(wait, 0.0), MAX_PART_WAIT_SECONDS))
        return None  # pragma: no cover - the loop returns or raises

    async def _send_part(
        self, client: httpx.AsyncClient, url: str, token: str, chat_id: int | str, text: str
    ) -> int | None:
        try:
            response = await client.post(url, json={"chat_id": chat_id, "text": text})
        except httpx.HTTPError as exc:
            raise SendError(_redact(f"{type(exc).__name__}: {exc}", token), retryable=True) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        if response.is_success and body.get("ok") is True:
            result = body.get("result")
            message_id = result.get("message_id") if isinstance(result, dict) else None
            return message_id if isinstance(message_id, int) else None
        code = body.get("error_code")
        if not isinstance(code, int):
            code = response.status_code
        description = str(body.get("description") or response.text[:500] or "no description")
        parameters = body.get("parameters")
        retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
        error: dict[str, Any] = {"error_code": code, "description": _redact(description, token)}
        if retry_after is not None:
            error["retry_after"] = retry_after
        # Rate limits and Telegram's own failures pass; any other refusal will not change.
        retryable = code == 429 or retry_after is not None or code >= 500 or code == 408
        raise SendError(
            f"Telegram error {code}: {error['description']}",
            retryable=retryable,
            provider_error=error,
            retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
        )
