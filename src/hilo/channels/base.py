"""The adapter protocol every channel implements, and the data passed across it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx

from hilo.errors import NotFound
from hilo.i18n import _


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
    ``id_verified``: whether the channel's own sender id is vouched for (a provider's user
    id is); an anonymous web visitor's or a form's id is not.
    """

    external_id: str
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    phone_verified: bool = False
    email_verified: bool = False
    id_verified: bool = True


def storable(value: Any) -> Any:
    """``value`` with strings every database and JSON column holds: no NUL characters (which
    PostgreSQL refuses), no lone surrogates."""
    if isinstance(value, str):
        return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {k: storable(v) for k, v in value.items()}
    return value


@dataclass
class InboundItem:
    """One thing a delivery reports.

    ``kind``: ``message`` (a customer's message), ``status`` (a delivery receipt for one of
    our messages: ``data`` holds ``provider_message_id``, ``status`` — sent, delivered, read
    or failed — and optionally ``error``; or, instead of the id, a ``watermark``: an ISO 8601
    time up to which every reply to ``sender`` has that status), ``edit`` (the customer
    edited a message: ``data["provider_message_id"]`` and the new ``text``), ``unsupported``
    (stored for the trail, nothing else happens), or ``call`` (news of a call the channel reported
    earlier: ``data["provider_message_id"]`` names the call, ``data["call"]`` holds its new
    status or duration, ``attachments`` a recording, ``text`` a transcript).

    ``answer``: what the provider must be answered for this item, where it expects content
    (the TwiML of an incoming call, the secret of RBM's set-up check); see
    :meth:`ChannelAdapter.acknowledge`.

    Kind ``identity``: the sender says they are now also known as ``data["new_sender"]``
    (a :class:`Sender` as a dict; WhatsApp's "user changed number"): the new identities join
    the sender's contact.

    ``account``: the provider account the item is addressed to (a WhatsApp phone number id,
    a Page id) when one delivery may carry several accounts' items; the flow stores the item
    on the workspace's channel of that account (see :class:`RoutesByAccount`). Empty: this
    channel.
    """

    provider_event_id: str
    kind: str
    sender: Sender | None = None
    text: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    sent_at: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    answer: str | None = None
    account: str = ""
    # Where the message says it belongs (e-mail): the conversation a signed reply token
    # names, and the provider ids of the messages it answers, nearest first. The flow follows
    # them only into the sender's own conversations.
    thread_conversation_id: str | None = None
    thread_refs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        # What a provider sent may hold NUL characters, which PostgreSQL refuses in JSONB.
        value: dict[str, Any] = storable(asdict(self))
        return value

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
    # The item's own answer (InboundItem.answer), also for a redelivery.
    answer: str | None = None


class PlainText(str):
    """An acknowledgement sent as ``text/plain`` (a bare ``str`` is sent as XML, TwiML)."""

    __slots__ = ()


@dataclass(frozen=True)
class OutboundMessage:
    """A reply to deliver. ``message_id`` is stable across retries (the idempotency key)."""

    message_id: uuid.UUID
    conversation_id: uuid.UUID
    recipient: str
    text: str
    created_at: datetime
    attachments: list[dict[str, Any]] = field(default_factory=list)
    # What the message carries beyond text: ``template`` ({name, language, params}) for one.
    data: dict[str, Any] = field(default_factory=dict)
    # The customer's latest message on this channel, which the reply answers (e-mail
    # threads on it: In-Reply-To, References, "Re:" subject).
    in_reply_to: ReplyContext | None = None


@dataclass(frozen=True)
class ReplyContext:
    """A received message as a reply to it needs it: its provider id and channel data."""

    provider_message_id: str | None
    data: Mapping[str, Any]


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str | None
    # Jobs to run once the send is recorded, committed with it (a web chat's e-mail fallback).
    follow_ups: tuple[FollowUp, ...] = ()


@dataclass(frozen=True)
class FollowUp:
    """A job an adapter asks for after a successful send, ``delay`` from then."""

    name: str
    payload: dict[str, Any]
    delay: timedelta = timedelta(0)


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
    # Durable jobs to start with the channel (an IMAP mailbox's poller), each given
    # ``{"channel_id": ...}``, committed with the channel itself.
    jobs: tuple[str, ...] = ()


class NoSetupCheck:
    """For channels whose provider makes no GET set-up check of the webhook URL."""

    def handshake(self, request: RawRequest, channel: ChannelContext) -> tuple[int, str]:
        """There is nothing to answer: 404 ``no_handshake``."""
        raise NotFound(_("This channel has no set-up check."), code="no_handshake")


class ChannelAdapter(Protocol):
    """One channel. Nothing outside an adapter branches on the channel type."""

    type: ClassVar[str]
    providers: ClassVar[tuple[str, ...]]
    # The channel's name on its badge (a brand, or a string marked for translation), and the
    # set-up help shown beside its webhook address.
    label: ClassVar[str]
    setup_help: ClassVar[str]
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
        """The status and body the provider expects once the delivery is stored.

        A dict or list is sent as JSON, a ``str`` as XML (TwiML), a :class:`PlainText` as
        plain text.
        """
        ...

    def handshake(self, request: RawRequest, channel: ChannelContext) -> tuple[int, str]:
        """Answer a provider's GET set-up check (status, plain-text body); 404 if none."""
        ...

    async def send(
        self, client: httpx.AsyncClient, channel: ChannelContext, message: OutboundMessage
    ) -> SendResult:
        """Deliver a reply through the provider's API; raise :class:`SendError` on failure."""
        ...


# -- optional capabilities ----------------------------------------------------------------------
# An adapter implements these only where its channel needs them. Callers test for them with
# ``isinstance`` (the protocols are runtime-checkable), so nothing branches on channel types.


@dataclass(frozen=True)
class MessageTemplate:
    """A pre-approved message a channel may send outside its reply window.

    ``body`` holds ``{{1}}``, ``{{2}}``… placeholders, ``params`` says how many;
    ``provider_id`` is the provider's own id for it where it has one (Twilio's ``HX…``
    content SID).
    """

    name: str
    language: str
    body: str
    params: int
    provider_id: str | None = None

    def render(self, values: list[str]) -> str:
        """The body with its placeholders filled, as the customer reads it."""
        text = self.body
        for index, value in enumerate(values, start=1):
            text = text.replace("{{" + str(index) + "}}", value)
        return text


@dataclass(frozen=True)
class ReplyDraft:
    """A reply about to be queued, as a channel's own sending rules see it.

    ``last_inbound_at``: when the customer last wrote on this channel (None: never).
    """

    text: str
    template: MessageTemplate | None
    attachments: list[dict[str, Any]]
    last_inbound_at: datetime | None
    at: datetime


@dataclass(frozen=True)
class MediaLocation:
    """Where a received file can be downloaded from, and how."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None
    # The size and type the provider declares, when it does (checked before downloading).
    size: int | None = None
    mime_type: str | None = None
    follow_redirects: bool = False


class MediaError(Exception):
    """A file could not be fetched. ``retryable``: worth trying again later."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@runtime_checkable
class RoutesByAccount(Protocol):
    """One delivery may carry items for several of the provider's accounts."""

    def account(self, provider: str, config: Mapping[str, Any]) -> str:
        """The provider account a channel with this configuration stands for."""
        ...


@runtime_checkable
class AnswersKeywords(Protocol):
    """The provider acts on some opt-out keywords itself and answers the customer: Hilo
    records the choice but sends no confirmation of its own (the provider would block it)."""

    provider_keywords: ClassVar[Mapping[str, str]]


@runtime_checkable
class CarriesNoText(Protocol):
    """The channel cannot deliver a written reply (a phone line): replies default elsewhere."""

    no_text_replies: ClassVar[bool]


@runtime_checkable
class ChecksReplies(Protocol):
    """The channel has its own rules for what may be sent (a reply window, media)."""

    def check_send(self, channel: ChannelContext, draft: ReplyDraft) -> None:
        """Refuse a reply the channel cannot deliver now; raise a ``HiloError``."""
        ...


@runtime_checkable
class HasTemplates(Protocol):
    """The channel sends pre-approved templates, listed from its configuration."""

    def templates(self, channel: ChannelContext) -> list[MessageTemplate]:
        """The channel's templates."""
        ...


@runtime_checkable
class FetchesMedia(Protocol):
    """Received files must be downloaded from the provider (its links expire)."""

    async def media_location(
        self, client: httpx.AsyncClient, channel: ChannelContext, attachment: Mapping[str, Any]
    ) -> MediaLocation | None:
        """Where to download ``attachment`` from (None: nothing to fetch); raise
        :class:`MediaError` when the provider cannot say."""
        ...


@runtime_checkable
class EmbedsFiles(Protocol):
    """Received files arrive inside the raw delivery itself (an e-mail's MIME parts)."""

    def embedded_files(
        self, raw: bytes, attachments: Sequence[Mapping[str, Any]]
    ) -> list[bytes | None]:
        """The bytes of each of ``attachments`` read from the raw delivery (None: not in it)."""
        ...
