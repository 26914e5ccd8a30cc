"""The generic API channel: a company's own apps post signed JSON and receive signed replies.

Inbound: ``POST /webhooks/api/{channel_id}`` with ``X-Hilo-Timestamp`` and
``X-Hilo-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{raw body}")>``.
Outbound: the same signature on a POST to the channel's ``callback_url``, with an
``X-Hilo-Delivery`` id that stays the same across retries.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
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
from hilo.crypto import constant_time_equal, hmac_sha256_hex, new_secret
from hilo.errors import InvalidPayload, InvalidSignature, StaleSignature
from hilo.i18n import _
from hilo.settings import get_settings


class _From(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=255)
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=320)


class _Inbound(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    id: str = Field(min_length=1, max_length=255)
    from_: _From = Field(alias="from")
    text: str = Field(max_length=65536)
    sent_at: datetime | None = None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Hilo-Signature`` value for ``body`` sent at ``timestamp``."""
    return "sha256=" + hmac_sha256_hex(secret, timestamp.encode() + b"." + body)


class ApiChannel(NoSetupCheck):
    type: ClassVar[str] = "api"
    label: ClassVar[str] = _("App")
    setup_help: ClassVar[str] = _(
        "Your app posts each customer message to the webhook address, signed with the secret "
        "(X-Hilo-Timestamp and X-Hilo-Signature: sha256 HMAC of timestamp.body). Replies go "
        "to the callback URL, signed the same way."
    )
    providers: ClassVar[tuple[str, ...]] = ("hilo",)
    identity_kind: ClassVar[str] = "api"
    identity_scope: ClassVar[str] = "channel"
    supports_opt_out: ClassVar[bool] = False

    def validate_config(self, provider: str, config: dict[str, Any]) -> ChannelSetup:
        callback = config.get("callback_url")
        if callback is not None:
            parts = urlsplit(str(callback))
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InvalidPayload(
                    _("callback_url must be an http or https URL."), code="invalid_config"
                )
        secret = config.get("secret") or new_secret()
        return ChannelSetup(
            config={"callback_url": callback} if callback else {}, secrets={"secret": secret}
        )

    def verify(self, request: RawRequest, channel: ChannelContext) -> None:
        timestamp = request.headers.get("x-hilo-timestamp", "")
        signature = request.headers.get("x-hilo-signature", "")
        if not timestamp or not signature:
            raise InvalidSignature()
        try:
            sent = int(timestamp)
        except ValueError as exc:
            raise InvalidSignature() from exc
        if abs(time.time() - sent) > get_settings().webhook_clock_skew_seconds:
            raise StaleSignature()
        expected = sign(str(channel.secrets["secret"]), timestamp, request.body)
        if not constant_time_equal(expected, signature):
            raise InvalidSignature()

    def parse_inbound(self, request: RawRequest, channel: ChannelContext) -> list[InboundItem]:
        try:
            payload = _Inbound.model_validate_json(request.body)
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()})
            raise InvalidPayload(
                _("Invalid payload: check the fields {fields}."),
                fields=", ".join(fields),
            ) from exc
        sender = payload.from_
        return [
            InboundItem(
                provider_event_id=payload.id,
                kind="message",
                # The company's signed app vouches for the phone and e-mail it sends.
                sender=Sender(
                    external_id=sender.id,
                    name=sender.name,
                    phone=sender.phone,
                    email=sender.email,
                    phone_verified=bool(sender.phone),
                    email_verified=bool(sender.email),
                ),
                text=payload.text,
                sent_at=payload.sent_at.isoformat() if payload.sent_at else None,
            )
        ]

    def acknowledge(self, results: list[IngestResult]) -> tuple[int, Any]:
        result = results[0]
        return 200, {"message_id": str(result.message_id), "duplicate": result.duplicate}

    async def send(
        self, client: httpx.AsyncClient, channel: ChannelContext, message: OutboundMessage
    ) -> SendResult:
        url = channel.config.get("callback_url")
        if not url:
            raise SendError("the channel has no callback_url", retryable=False)
        body = json.dumps(
            {
                "event": "message.created",
                "message_id": str(message.message_id),
                "conversation_id": str(message.conversation_id),
                "contact": {"from_id": message.recipient},
                "text": message.text,
                "created_at": message.created_at.isoformat(),
            },
            ensure_ascii=False,
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Hilo-Timestamp": timestamp,
            "X-Hilo-Signature": sign(str(channel.secrets["secret"]), timestamp, body),
            "X-Hilo-Delivery": str(message.message_id),
        }
        try:
            response = await client.post(str(url), content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SendError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        if response.is_success:
            return SendResult(provider_message_id=str(message.message_id))
        error = f"HTTP {response.status_code}: {response.text[:500]}"
        # A 4xx other than timeouts and rate limits will not change by retrying.
        retryable = response.status_code >= 500 or response.status_code in (408, 409, 425, 429)
        raise SendError(error, retryable=retryable, provider_error=response.text[:2000])
