"""The web chat widget: a ``<script>`` tag on a company's site talking to Hilo.

There is no outside provider. Visitors talk to the public endpoints of ``hilo.webchat``
(WebSocket, or long-polling plus POST), which hand each message to the same durable pipeline
as every webhook: :func:`hilo.flows.receive_webhook` with a body built and signed by Hilo
itself (an internal HMAC), so nobody can post to ``/webhooks/webchat/{id}`` directly.

A visitor is ``v:<visitor id>`` (anonymous, unverified) or, when the site vouched for its
signed-in customer with ``user_hash = hex(HMAC-SHA256(channel secret, user_id))``,
``u:<user_id>`` (verified): every device of that customer joins the same contact.

Outbound: the reply is already stored; :meth:`WebchatChannel.send` marks it sent, and the
``message.sent`` event reaches the visitor's open sockets through the live broker. A reply
the visitor has not seen after ``email_fallback_after_seconds`` goes out by e-mail (see
:mod:`hilo.channels.email_fallback`).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hilo.channels.base import (
    ChannelContext,
    ChannelSetup,
    FollowUp,
    InboundItem,
    IngestResult,
    NoSetupCheck,
    OutboundMessage,
    RawRequest,
    Sender,
    SendResult,
)
from hilo.channels.public import (
    validate_allowed_origins,
    validate_bool,
    validate_int,
    validate_secret,
)
from hilo.crypto import constant_time_equal, hmac_sha256_hex, internal_hmac
from hilo.errors import InvalidPayload, InvalidSignature
from hilo.i18n import _

SIGNATURE_HEADER = "x-hilo-webchat-signature"
INGEST_PURPOSE = "webchat-ingest"
EMAIL_FALLBACK_JOB = "channels.email_fallback"
MAX_TEXT = 4000
MAX_TITLE = 80
DEFAULT_FALLBACK_SECONDS = 120
MAX_FALLBACK_SECONDS = 7 * 24 * 3600
DEFAULT_MESSAGES_PER_MINUTE = 30
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
STATUSES = ("delivered", "read")


@dataclass(frozen=True)
class WebchatSettings:
    """A web chat channel's configuration, typed."""

    allowed_origins: tuple[str, ...]
    identity_required: bool
    email_fallback: bool
    email_fallback_after: timedelta
    email_channel_id: uuid.UUID | None
    messages_per_minute: int
    title: str
    color: str
    locale: str


def settings_of(config: Any) -> WebchatSettings:
    """The typed view of a validated configuration."""
    channel = config.get("email_channel_id")
    return WebchatSettings(
        allowed_origins=tuple(config.get("allowed_origins") or ()),
        identity_required=config.get("identity") == "required",
        email_fallback=bool(config.get("email_fallback", True)),
        email_fallback_after=timedelta(
            seconds=int(config.get("email_fallback_after_seconds", DEFAULT_FALLBACK_SECONDS))
        ),
        email_channel_id=uuid.UUID(channel) if channel else None,
        messages_per_minute=int(config.get("messages_per_minute", DEFAULT_MESSAGES_PER_MINUTE)),
        title=str(config.get("title") or ""),
        color=str(config.get("color") or "#1f6feb"),
        locale=str(config.get("locale") or "auto"),
    )


def identity_hash(secret: str, value: str) -> str:
    """What the company's server computes: hex HMAC-SHA256 of ``value`` with the secret."""
    return hmac_sha256_hex(secret, value.encode())


def identity_matches(secret: str, value: str, given: str | None) -> bool:
    """Whether ``given`` is the identity hash of ``value`` (constant time)."""
    if not secret or not given:
        return False
    return constant_time_equal(identity_hash(secret, value), given.strip().lower())


def valid_client_message_id(value: str) -> bool:
    """A widget's own message id: 1-64 characters of A-Z a-z 0-9 _ . : -."""
    return bool(_CLIENT_ID.match(value))


def sign_ingest(body: bytes) -> str:
    """The internal signature that lets a visitor's event into the pipeline."""
    return internal_hmac(INGEST_PURPOSE, body.decode())


def ingest_body(event: dict[str, Any]) -> bytes:
    """The canonical body of a visitor's event, as stored in ``inbound_events``."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


class _Sender(BaseModel):
    model_config = ConfigDict(extra="forbid")
    external_id: str = Field(min_length=3, max_length=260)
    id_verified: bool
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    email_verified: bool = False
    phone: str | None = Field(default=None, max_length=64)
    phone_verified: bool = False


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(pattern="^(message|status|identity)$")
    visitor_id: uuid.UUID
    sender: _Sender | None = None
    client_message_id: str | None = Field(default=None, max_length=64)
    text: str = Field(default="", max_length=MAX_TEXT)
    page_url: str | None = Field(default=None, max_length=2000)
    sent_at: str | None = None
    message_id: uuid.UUID | None = None
    status: str | None = None
    email: str | None = Field(default=None, max_length=320)


class WebchatChannel(NoSetupCheck):
    type: ClassVar[str] = "webchat"
    label: ClassVar[str] = _("Web chat")
    setup_help: ClassVar[str] = _(
        "Paste the widget's script tag into your site's pages, and list your site's address "
        "under the channel's allowed origins."
    )
    providers: ClassVar[tuple[str, ...]] = ("hilo",)
    identity_kind: ClassVar[str] = "webchat"
    # A visitor or a site's user id means something only to one widget.
    identity_scope: ClassVar[str] = "channel"
    supports_opt_out: ClassVar[bool] = False

    def validate_config(self, provider: str, config: dict[str, Any]) -> ChannelSetup:
        public: dict[str, Any] = {
            "allowed_origins": validate_allowed_origins(config.get("allowed_origins"))
        }
        identity = config.get("identity", "optional")
        if identity not in ("optional", "required"):
            raise InvalidPayload(_("identity must be optional or required."), code="invalid_config")
        public["identity"] = identity
        public["email_fallback"] = validate_bool(config, "email_fallback", True)
        public["email_fallback_after_seconds"] = validate_int(
            config,
            "email_fallback_after_seconds",
            DEFAULT_FALLBACK_SECONDS,
            0,
            MAX_FALLBACK_SECONDS,
        )
        public["messages_per_minute"] = validate_int(
            config, "messages_per_minute", DEFAULT_MESSAGES_PER_MINUTE, 1, 600
        )
        email_channel = config.get("email_channel_id")
        if email_channel:
            try:
                public["email_channel_id"] = str(uuid.UUID(str(email_channel)))
            except ValueError as exc:
                raise InvalidPayload(
                    _("email_channel_id must be a channel id."), code="invalid_config"
                ) from exc
        title = config.get("title")
        if title is not None:
            if not isinstance(title, str) or len(title.strip()) > MAX_TITLE:
                raise InvalidPayload(
                    _("title must be text of at most {count} characters."),
                    code="invalid_config",
                    count=MAX_TITLE,
                )
            public["title"] = title.strip()
        color = config.get("color")
        if color is not None:
            if not isinstance(color, str) or not _COLOR.match(color):
                raise InvalidPayload(
                    _("color must be a hex colour such as #1f6feb."), code="invalid_config"
                )
            public["color"] = color.lower()
        locale = config.get("locale", "auto")
        if locale not in ("auto", "es", "en"):
            raise InvalidPayload(_("locale must be auto, es or en."), code="invalid_config")
        public["locale"] = locale
        secret = validate_secret(config)
        return ChannelSetup(config=public, secrets={"secret": secret})

    def verify(self, request: RawRequest, channel: ChannelContext) -> None:
        # Only Hilo's own visitor endpoints can sign: the key derives from HILO_SECRET_KEY.
        given = request.headers.get(SIGNATURE_HEADER, "")
        if not given or not constant_time_equal(sign_ingest(request.body), given):
            raise InvalidSignature()

    def parse_inbound(self, request: RawRequest, channel: ChannelContext) -> list[InboundItem]:
        try:
            event = _Event.model_validate_json(request.body)
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()})
            raise InvalidPayload(
                _("Invalid payload: check the fields {fields}."), fields=", ".join(fields)
            ) from exc
        if event.kind == "status":
            if event.message_id is None or event.status not in STATUSES:
                raise InvalidPayload(
                    _("Invalid payload: check the fields {fields}."), fields="message_id, status"
                )
            return [
                InboundItem(
                    # One receipt per message and status, however many tabs report it.
                    provider_event_id=f"seen:{event.message_id}:{event.status}",
                    kind="status",
                    data={"provider_message_id": str(event.message_id), "status": event.status},
                )
            ]
        if event.kind == "identity":
            if event.sender is None or not event.email:
                raise InvalidPayload(
                    _("Invalid payload: check the fields {fields}."), fields="sender, email"
                )
            sender = Sender(**event.sender.model_dump())
            # What the visitor typed: it joins their contact, or is a merge suggestion when
            # another contact has it; never a join by itself.
            typed = replace(sender, email=event.email, email_verified=False)
            return [
                InboundItem(
                    provider_event_id=f"email:{event.visitor_id}:{event.email}",
                    kind="identity",
                    sender=sender,
                    data={"new_sender": asdict(typed)},
                )
            ]
        client_id = event.client_message_id or ""
        if event.sender is None or not valid_client_message_id(client_id) or not event.text.strip():
            raise InvalidPayload(
                _("Invalid payload: check the fields {fields}."),
                fields="sender, client_message_id, text",
            )
        data: dict[str, Any] = {"visitor_id": str(event.visitor_id), "client_message_id": client_id}
        if event.page_url:
            data["page_url"] = event.page_url
        return [
            InboundItem(
                # The widget's own id: a retried send is the same message.
                provider_event_id=f"{event.visitor_id}:{client_id}",
                kind="message",
                sender=Sender(**event.sender.model_dump()),
                text=event.text,
                sent_at=event.sent_at,
                data=data,
            )
        ]

    def acknowledge(self, results: list[IngestResult]) -> tuple[int, Any]:
        result = results[0]
        return 200, {"message_id": str(result.message_id), "duplicate": result.duplicate}

    async def send(
        self, client: httpx.AsyncClient, channel: ChannelContext, message: OutboundMessage
    ) -> SendResult:
        # The reply is stored already; "sent" is what makes it visible to the visitor, and
        # its event carries it to their open sockets.
        settings = settings_of(channel.config)
        follow_ups: tuple[FollowUp, ...] = ()
        if settings.email_fallback:
            follow_ups = (
                FollowUp(
                    EMAIL_FALLBACK_JOB,
                    {"message_id": str(message.message_id), "unless_seen": True},
                    delay=settings.email_fallback_after,
                ),
            )
        return SendResult(provider_message_id=str(message.message_id), follow_ups=follow_ups)
