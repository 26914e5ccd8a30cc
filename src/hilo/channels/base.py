"""The adapter protocol every channel implements, and the data passed across it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

import httpx


@dataclass(frozen=True)
class RawRequest:
    """A webhook request as the provider sent it: the raw body is what signatures cover."""

    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str]
    url: str
    received_at: datetime


@dataclass(frozen=True)
class ChannelContext:
    """A channel row with its credentials decrypted, as adapters see it."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    type: str
    provider: str
    config: Mapping[str, Any]
    secrets: Mapping[str, Any]


@dataclass
class Sender:
    """Who sent an inbound message, as the channel identifies them.

    ``phone_verified`` / ``email_verified``: whether a signed source vouches for that phone
    or e-mail (a company's API, the carrier's sender number). Typed-in values are not.
    """

    external_id: str
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    phone_verified: bool = False
    email_verified: bool = False


@dataclass
class InboundItem:
    """One thing a delivery reports.

    ``kind``: ``message`` (a customer's message), ``status`` (a delivery receipt for one of
    our messages: ``data`` holds ``provider_message_id``, ``status`` — sent, delivered, read
    or failed — and optionally ``error``), ``edit`` (the customer edited a message:
    ``data["provider_message_id"]`` and the new ``text``), or ``unsupported`` (stored for
    the trail, nothing else happens).
    """

    provider_event_id: str
    kind: str
    sender: Sender | None = None
    text: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    sent_at: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> InboundItem:
        sender = value.get("sender")
        return cls(**{**value, "sender": Sender(**sender) if sender else None})


@dataclass(frozen=True)
class IngestResult:
    """What storing one item gave: the message it is (or will be) and whether it was new."""

    provider_event_id: str
    message_id: uuid.UUID
    duplicate: bool


@dataclass(frozen=True)
class OutboundMessage:
    """A reply to deliver. ``message_id`` is stable across retries (the idempotency key)."""

    message_id: uuid.UUID
    conversation_id: uuid.UUID
    recipient: str
    text: str
    created_at: datetime
    attachments: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str | None


class SendError(Exception):
    """The provider refused or could not be reached. ``retryable``: worth trying again."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        provider_error: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.provider_error = provider_error
        # The provider's own "try again in N seconds", honoured instead of our backoff.
        self.retry_after = retry_after


@dataclass(frozen=True)
class ChannelSetup:
    """A validated configuration, split into what is shown and what is encrypted."""

    config: dict[str, Any]
    secrets: dict[str, Any]


class ChannelAdapter(Protocol):
    """One channel. Nothing outside an adapter branches on the channel type."""

    type: ClassVar[str]
    providers: ClassVar[tuple[str, ...]]
    # The identity kind of the channel's own sender id, and whether that id is only
    # meaningful inside one channel ("channel") or across the workspace ("workspace").
    identity_kind: ClassVar[str]
    identity_scope: ClassVar[str]
    # Whether STOP / BAJA / CANCELAR and START / ALTA are honoured on this channel.
    supports_opt_out: ClassVar[bool]

    def validate_config(self, provider: str, config: dict[str, Any]) -> ChannelSetup:
        """Check a channel's configuration; raise ``InvalidPayload`` when it is wrong."""
        ...

    def verify(self, request: RawRequest, channel: ChannelContext) -> None:
        """Check the provider's signature over the raw body; raise when it fails."""
        ...

    def parse_inbound(self, request: RawRequest, channel: ChannelContext) -> list[InboundItem]:
        """Turn a verified delivery into items; raise ``InvalidPayload`` when malformed."""
        ...

    def acknowledge(self, results: list[IngestResult]) -> tuple[int, Any]:
        """The status and JSON body the provider expects once the delivery is stored."""
        ...

    def handshake(self, request: RawRequest, channel: ChannelContext) -> tuple[int, str]:
        """Answer a provider's GET set-up check (status, plain-text body); 404 if none."""
        ...

    async def send(
        self, client: httpx.AsyncClient, channel: ChannelContext, message: OutboundMessage
    ) -> SendResult:
        """Deliver a reply through the provider's API; raise :class:`SendError` on failure."""
        ...
