"""Web chat visitor rules: sessions and who they are, messages in, and what a visitor may see.

Everything a visitor says enters through the channel's pipeline (:func:`flows.receive_webhook`)
with a body Hilo builds and signs itself, so it is stored once per client message id and
processed by the durable worker like any webhook.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from importlib.resources import files
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hilo import flows
from hilo.channels import email_fallback, public
from hilo.channels import repository as channel_repository
from hilo.channels import service as channels
from hilo.channels.base import ChannelContext, OutboundMessage, RawRequest, Sender
from hilo.channels.webchat import (
    SIGNATURE_HEADER,
    WebchatChannel,
    identity_matches,
    ingest_body,
    settings_of,
    sign_ingest,
    valid_client_message_id,
)
from hilo.clock import now
from hilo.contacts import repository as contact_repository
from hilo.contacts import service as contacts
from hilo.contacts.service import normalise_email
from hilo.conversations import repository as conversation_repository
from hilo.crypto import constant_time_equal, internal_hmac
from hilo.errors import HiloError, InvalidPayload, InvalidSignature, NotFound, Unauthorized
from hilo.events import Actor
from hilo.i18n import LOCALES, _, translate
from hilo.jobs.service import enqueue
from hilo.models import Channel, Message, WebchatVisitor, Workspace
from hilo.public_pages import simple_page
from hilo.ratelimit import RateLimiter
from hilo.settings import get_settings
from hilo.webchat import repository
from hilo.webchat.schemas import (
    EmailIn,
    EmailOut,
    MessagesOut,
    SeenIn,
    SeenOut,
    SendOut,
    SessionIn,
    SessionOut,
    VisitorMessage,
    VisitorMessageIn,
    WidgetConfig,
)
from hilo.webchat.strings import widget_strings

log = logging.getLogger(__name__)

TOKEN_PURPOSE = "webchat-visitor"  # noqa: S105 - an HMAC purpose
TOKEN_VERSION = "wv1"  # noqa: S105 - a format tag
# The messages a widget shows (and a poll compares): the latest ones of the conversation.
WINDOW = 100
PROOF_PURPOSE = "webchat-email-proof"
PROOF_JOB = "webchat.email_proof"
PROOF_TTL = timedelta(hours=24)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

# Per IP for new sessions; per visitor for everything else but messages, whose rate is the
# channel's own ``messages_per_minute``.
_sessions = RateLimiter(30, burst=30)
_requests = RateLimiter(240, burst=60)
_emails = RateLimiter(6, burst=3)
_messages: dict[int, RateLimiter] = {}


def _message_limiter(per_minute: int) -> RateLimiter:
    limiter = _messages.get(per_minute)
    if limiter is None:
        limiter = _messages[per_minute] = RateLimiter(per_minute)
    return limiter


# -- tokens ---------------------------------------------------------------------------------


def issue_token(channel_id: uuid.UUID, visitor_id: uuid.UUID) -> str:
    """The opaque token a widget keeps in ``localStorage`` to stay the same visitor."""
    payload = f"{TOKEN_VERSION}.{visitor_id.hex}"
    return f"{payload}.{internal_hmac(TOKEN_PURPOSE, f'{channel_id}.{payload}')}"


def read_token(channel_id: uuid.UUID, token: str | None) -> uuid.UUID | None:
    """The visitor a token names on this channel, or None when forged or malformed."""
    if not token or token.count(".") != 2:
        return None
    payload, _sep, signature = token.rpartition(".")
    expected = internal_hmac(TOKEN_PURPOSE, f"{channel_id}.{payload}")
    version, _sep, visitor = payload.partition(".")
    if version != TOKEN_VERSION or not constant_time_equal(expected, signature):
        return None
    try:
        return uuid.UUID(hex=visitor)
    except ValueError:
        return None


# -- the channel and the visitor ------------------------------------------------------------


async def get_channel(session: AsyncSession, channel_id: uuid.UUID) -> Channel:
    """An active web chat channel, or NotFound: visitors carry no workspace, the id decides."""
    channel = await channel_repository.get_for_webhook(session, channel_id)
    if channel is None or channel.type != WebchatChannel.type or not channel.active:
        raise NotFound(_("Unknown channel."), code="unknown_channel")
    return channel


def check_origin(channel: Channel, headers: Mapping[str, str]) -> None:
    """Refuse browsers on sites not in the channel's ``allowed_origins``."""
    public.check_origin(channel.config, {k.lower(): v for k, v in headers.items()})


async def authenticate(
    session: AsyncSession, channel: Channel, token: str | None
) -> WebchatVisitor:
    """The visitor a token stands for; Unauthorized when it is missing, forged or unknown."""
    visitor_id = read_token(channel.id, token)
    visitor = (
        await repository.get_visitor(session, channel.workspace_id, channel.id, visitor_id)
        if visitor_id
        else None
    )
    if visitor is None:
        raise Unauthorized(
            _("The chat session is not valid; reload the page."), code="invalid_visitor"
        )
    return visitor


def sender_id(visitor: WebchatVisitor) -> str:
    """The visitor's id on the channel: the site's verified user id, else the visitor's own."""
    return f"u:{visitor.user_id}" if visitor.user_id else f"v:{visitor.id}"


def _sender(visitor: WebchatVisitor) -> Sender:
    return Sender(
        external_id=sender_id(visitor),
        name=visitor.name or None,
        email=visitor.email,
        email_verified=visitor.email_verified,
        phone=visitor.phone,
        phone_verified=visitor.phone_verified,
        id_verified=visitor.user_id is not None,
    )


def _signed(
    secret: str, value: str | None, given: str | None, code: str
) -> tuple[str | None, bool]:
    """A value the site passed, and whether its HMAC vouches for it (a wrong one refuses)."""
    if not value or not value.strip():
        return None, False
    value = value.strip()
    if not given:
        return value, False
    if not identity_matches(secret, value, given):
        raise InvalidSignature(
            _("The identity hash does not match: compute it with the channel's secret."),
            code=code,
        )
    return value, True


async def do_start_session(
    session: AsyncSession, channel: Channel, body: SessionIn, *, client: str
) -> SessionOut:
    """A page load: the same visitor again when the token (and signed-in user) still match."""
    _sessions.check((channel.id, client))
    settings = settings_of(channel.config)
    secret = str(channels.context(channel).secrets.get("secret") or "")
    user_id, user_verified = _signed(secret, body.user_id, body.user_hash, "invalid_user_hash")
    if user_id and not user_verified:
        raise InvalidSignature(
            _("The identity hash does not match: compute it with the channel's secret."),
            code="invalid_user_hash",
        )
    if user_id is None and settings.identity_required:
        raise Unauthorized(_("This chat is for signed-in customers."), code="identity_required")
    typed, email_verified = _signed(secret, body.email, body.email_hash, "invalid_email_hash")
    email = normalise_email(typed) if typed is not None else None
    if typed is not None and email is None:
        raise InvalidPayload(_("That e-mail address does not look right."), code="invalid_email")
    phone, phone_verified = _signed(secret, body.phone, body.phone_hash, "invalid_phone_hash")
    visitor_id = read_token(channel.id, body.token)
    visitor = (
        await repository.get_visitor(session, channel.workspace_id, channel.id, visitor_id)
        if visitor_id
        else None
    )
    moment = now()
    if visitor is None or visitor.user_id != user_id:
        # A new browser, or a different (or signed-out) customer: never someone else's chat.
        visitor = WebchatVisitor(
            workspace_id=channel.workspace_id,
            channel_id=channel.id,
            user_id=user_id,
            created_at=moment,
        )
        session.add(visitor)
    if body.name and body.name.strip():
        visitor.name = body.name.strip()
    if email is not None and not (visitor.email_verified and visitor.email == email):
        visitor.email, visitor.email_verified = email, email_verified
    if phone is not None and not (visitor.phone_verified and visitor.phone == phone):
        visitor.phone, visitor.phone_verified = phone, phone_verified
    if body.locale and body.locale[:2].lower() in LOCALES:
        visitor.locale = body.locale[:2].lower()
    visitor.last_seen_at = moment
    await session.flush()
    return SessionOut(
        token=issue_token(channel.id, visitor.id),
        visitor_id=visitor.id,
        identified=visitor.user_id is not None,
        email=visitor.email,
        email_verified=visitor.email_verified,
        config=widget_config(channel),
    )


async def visitor_request(
    session: AsyncSession, channel_id: uuid.UUID, headers: Mapping[str, str], token: str | None
) -> tuple[Channel, WebchatVisitor]:
    """The channel and the visitor of a widget request, from an allowed site."""
    channel = await get_channel(session, channel_id)
    check_origin(channel, headers)
    return channel, await authenticate(session, channel, token)


async def widget_script(session: AsyncSession, channel_id: uuid.UUID) -> str:
    """The widget's JavaScript with the channel's settings and strings built in."""
    channel = await get_channel(session, channel_id)
    settings = settings_of(channel.config)
    boot = {
        "channel": str(channel.id),
        "base": get_settings().public_url.rstrip("/"),
        "config": widget_config(channel).model_dump(),
        "identity_required": settings.identity_required,
        "strings": widget_strings(),
    }
    # ensure_ascii: no U+2028 or "</script>"-like surprises inside the script.
    return _script_source().replace(SCRIPT_PLACEHOLDER, json.dumps(boot, ensure_ascii=True), 1)


SCRIPT_PLACEHOLDER = "/*@HILO_BOOT@*/null"


@lru_cache(maxsize=1)
def _script_source() -> str:
    return (files("hilo") / "web" / "static" / "widget" / "widget.js").read_text(encoding="utf-8")


def widget_config(channel: Channel) -> WidgetConfig:
    """What the widget shows of the channel's configuration."""
    settings = settings_of(channel.config)
    return WidgetConfig(title=settings.title, color=settings.color, locale=settings.locale)


# -- what the visitor says -------------------------------------------------------------------


async def _ingest(session: AsyncSession, channel: Channel, event: dict[str, Any]) -> dict[str, Any]:
    body = ingest_body(event)
    request = RawRequest(
        body=body,
        headers={SIGNATURE_HEADER: sign_ingest(body)},
        query={},
        url=f"{get_settings().public_url.rstrip('/')}/webhooks/webchat/{channel.id}",
        received_at=now(),
    )
    _status, payload = await flows.receive_in(
        session, channel_type=WebchatChannel.type, channel_id=channel.id, request=request
    )
    result: dict[str, Any] = payload
    return result


async def do_send(
    session: AsyncSession, channel: Channel, visitor: WebchatVisitor, body: VisitorMessageIn
) -> SendOut:
    """A visitor's message, stored once per ``client_message_id`` and processed by a worker."""
    _message_limiter(settings_of(channel.config).messages_per_minute).check(
        (channel.id, visitor.id)
    )
    if not valid_client_message_id(body.client_message_id):
        raise InvalidPayload(
            _("Invalid payload: check the fields {fields}."), fields="client_message_id"
        )
    if not body.text.strip():
        raise InvalidPayload(_("The message text is empty."), code="empty_text")
    event = {
        "kind": "message",
        "visitor_id": str(visitor.id),
        "sender": asdict(_sender(visitor)),
        "client_message_id": body.client_message_id,
        "text": body.text,
        "page_url": body.page_url,
        "sent_at": now().isoformat(),
    }
    result = await _ingest(session, channel, event)
    visitor.last_seen_at = now()
    return SendOut(
        message_id=uuid.UUID(result["message_id"]),
        client_message_id=body.client_message_id,
        duplicate=bool(result["duplicate"]),
    )


async def do_leave_email(
    session: AsyncSession, channel: Channel, visitor: WebchatVisitor, body: EmailIn
) -> EmailOut:
    """The visitor's own e-mail, for answers when they have left: unverified, never a join."""
    _emails.check((channel.id, visitor.id))
    email = normalise_email(body.email)
    if email is None:
        raise InvalidPayload(_("That e-mail address does not look right."), code="invalid_email")
    changed = visitor.email != email
    if changed:
        visitor.email, visitor.email_verified = email, False
    if not visitor.email_verified:
        sender = asdict(_sender(visitor))
        sender.update(email=None, email_verified=False)
        event = {
            "kind": "identity",
            "visitor_id": str(visitor.id),
            "sender": sender,
            "email": email,
        }
        await _ingest(session, channel, event)
        if changed:
            # A link to that address proves it is theirs (see do_confirm_email).
            payload = {"channel_id": str(channel.id), "visitor_id": str(visitor.id), "email": email}
            enqueue(session, PROOF_JOB, payload, workspace_id=channel.workspace_id)
    return EmailOut(email=email, email_verified=visitor.email_verified)


# -- proving a typed e-mail --------------------------------------------------------------------


def proof_token(channel_id: uuid.UUID, visitor: WebchatVisitor, *, expires: datetime) -> str:
    """The token of the link that proves the visitor owns their current e-mail."""
    stamp = int(expires.timestamp())
    signed = f"{channel_id}.{visitor.id}.{visitor.email}.{stamp}"
    return f"{visitor.id.hex}.{stamp}.{internal_hmac(PROOF_PURPOSE, signed)}"


@dataclass(frozen=True)
class Proof:
    """A proof e-mail ready to go out through the workspace's e-mail channel."""

    channel_type: str
    channel: ChannelContext
    message: OutboundMessage


class ProofNotReady(Exception):
    """The visitor's first message is not processed yet: no conversation to thread on."""


async def prepare_proof(
    session: AsyncSession, channel_id: uuid.UUID, visitor_id: uuid.UUID, email: str
) -> Proof | None:
    """The proof e-mail for a typed address, or None when it is no longer needed or possible."""
    channel = await channel_repository.get_for_webhook(session, channel_id)
    visitor = (
        await repository.get_visitor(session, channel.workspace_id, channel.id, visitor_id)
        if channel is not None
        else None
    )
    if channel is None or visitor is None or visitor.email != email or visitor.email_verified:
        return None
    target = await email_fallback.email_channel(
        session, channel.workspace_id, channel.config.get("email_channel_id")
    )
    if target is None:
        log.info("no e-mail channel in workspace %s: proof link not sent", channel.workspace_id)
        return None
    contact_id = await contact_of(session, channel, visitor)
    conversation = None
    if contact_id is not None:
        conversation = await conversation_repository.latest_unresolved(
            session, channel.workspace_id, contact_id
        ) or await conversation_repository.latest_resolved_since(
            session, channel.workspace_id, contact_id, EPOCH
        )
    if conversation is None:
        raise ProofNotReady()
    workspace = await session.get_one(Workspace, channel.workspace_id)
    locale = visitor.locale or workspace.default_locale
    text = translate(
        _(
            "Hello! To confirm that {email} is your e-mail address and get our answers there, "
            "open this link (it works for 24 hours):\n\n{link}\n\n"
            "If you did not write to us, you can ignore this message."
        ),
        locale,
        email=email,
        link=proof_link(channel.id, visitor),
    )
    outbound = OutboundMessage(
        # The same id on every retry: the relay sees one message.
        message_id=uuid.uuid5(uuid.NAMESPACE_URL, f"hilo:webchat-proof:{visitor.id}:{email}"),
        conversation_id=conversation.id,
        recipient=email,
        text=text,
        created_at=now(),
    )
    return Proof(target.type, channels.context(target), outbound)


def confirm_page(locale: str, *, email: str | None = None, error: HiloError | None = None) -> str:
    """The page a proof link opens: confirmed, or why not."""
    if error is not None:
        return simple_page(
            locale,
            translate(_("Link not valid"), locale),
            translate(error.message, locale, **error.params),
        )
    return simple_page(
        locale,
        translate(_("E-mail confirmed"), locale),
        translate(
            _("Thank you. We will answer you at {email} when you are not in the chat."),
            locale,
            email=email or "",
        ),
    )


def proof_link(channel_id: uuid.UUID, visitor: WebchatVisitor) -> str:
    """The confirmation link e-mailed to a visitor's typed address."""
    token = proof_token(channel_id, visitor, expires=now() + PROOF_TTL)
    base = get_settings().public_url.rstrip("/")
    return f"{base}/webchat/{channel_id}/confirm/{token}"


async def do_confirm_email(session: AsyncSession, channel_id: uuid.UUID, token: str) -> str:
    """Open a proof link: the visitor's e-mail becomes verified; returns the address.

    Verified, it behaves as any verified e-mail: it joins the contact that already has it
    verified (the visitor's own contact is merged into that one), or becomes a verified
    identity of the visitor's contact. Another contact's unverified claim stays a suggestion.
    """
    channel = await get_channel(session, channel_id)
    invalid = InvalidPayload(_("This link is not valid or has expired."), code="invalid_link")
    visitor_hex, _sep, rest = token.partition(".")
    stamp = rest.partition(".")[0]
    try:
        visitor_id, expires = uuid.UUID(hex=visitor_hex), int(stamp)
    except ValueError as exc:
        raise invalid from exc
    # No genuine link expires later than PROOF_TTL from now (nor fits no datetime).
    if not now().timestamp() <= expires <= (now() + PROOF_TTL).timestamp():
        raise invalid
    visitor = await repository.get_visitor(session, channel.workspace_id, channel.id, visitor_id)
    if visitor is None or not visitor.email:
        raise invalid
    expected = proof_token(channel.id, visitor, expires=datetime.fromtimestamp(expires, UTC))
    if not constant_time_equal(expected, token):
        raise invalid
    visitor.email_verified = True
    contact_id = await contact_of(session, channel, visitor)
    found = await contact_repository.find_identity(
        session, channel.workspace_id, kind="email", scope="", value=visitor.email
    )
    owner = (
        await contact_repository.get(session, channel.workspace_id, found.contact_id)
        if found is not None and found.verified
        else None
    )
    if owner is not None and contact_id is not None and owner.id != contact_id:
        # Proven now, verified there: the same person. Their chat joins the known contact.
        await contacts.do_merge(
            session,
            workspace_id=channel.workspace_id,
            survivor_id=owner.id,
            absorbed_id=contact_id,
            actor=Actor.contact(contact_id),
        )
        return visitor.email
    await contacts.resolve_sender(
        session,
        workspace_id=channel.workspace_id,
        sender_claim=contacts.Claim(
            WebchatChannel.identity_kind,
            channels.identity_scope(channel),
            sender_id(visitor),
            verified=visitor.user_id is not None,
        ),
        other_claims=[contacts.Claim("email", "", visitor.email, verified=True)],
        name=visitor.name or None,
        channel_id=channel.id,
    )
    return visitor.email


async def do_seen(
    session: AsyncSession, channel: Channel, visitor: WebchatVisitor, body: SeenIn
) -> SeenOut:
    """The widget showed these replies: they become delivered or read (never backwards)."""
    _requests.check((channel.id, visitor.id))
    contact_id = await contact_of(session, channel, visitor)
    if contact_id is None:
        return SeenOut(acknowledged=0)
    replies = await repository.replies_to(
        session,
        channel.workspace_id,
        channel_id=channel.id,
        contact_id=contact_id,
        message_ids=body.message_ids,
    )
    # Only forward: a reply already read (or not sent yet) is left alone.
    rank = {"sent": 1, "delivered": 2, "read": 3}
    count = 0
    for reply in replies:
        if not 0 < rank.get(reply.status, 0) < rank[body.status]:
            continue
        event = {
            "kind": "status",
            "visitor_id": str(visitor.id),
            "message_id": str(reply.id),
            "status": body.status,
        }
        await _ingest(session, channel, event)
        count += 1
    return SeenOut(acknowledged=count)


# -- what the visitor sees -------------------------------------------------------------------


async def contact_of(
    session: AsyncSession, channel: Channel, visitor: WebchatVisitor
) -> uuid.UUID | None:
    """The visitor's contact (following merges), once their first message was processed."""
    identity = await contact_repository.find_identity(
        session,
        channel.workspace_id,
        kind=WebchatChannel.identity_kind,
        scope=channels.identity_scope(channel),
        value=sender_id(visitor),
    )
    if identity is None:
        return None
    contact = await contact_repository.get(session, channel.workspace_id, identity.contact_id)
    return contact.id


def visitor_message(message: Message) -> VisitorMessage:
    """A message as the widget shows it."""
    if message.kind == "inbound":
        sender = "visitor"
    elif message.sender_type in ("bot", "system"):
        sender = message.sender_type
    else:
        sender = "agent"
    client_id = (message.data or {}).get("client_message_id") if sender == "visitor" else None
    return VisitorMessage(
        id=message.id,
        client_message_id=client_id,
        sender=sender,
        text=message.text,
        status=message.status,
        created_at=message.created_at,
    )


async def window(
    session: AsyncSession, channel: Channel, contact_id: uuid.UUID | None
) -> list[VisitorMessage]:
    """The latest messages of the visitor's conversation on this channel, oldest first."""
    if contact_id is None:
        return []
    rows = await repository.visible_messages(
        session, channel.workspace_id, channel_id=channel.id, contact_id=contact_id, limit=WINDOW
    )
    return [visitor_message(m) for m in rows]


async def one_message(
    session: AsyncSession, channel: Channel, contact_id: uuid.UUID, message_id: uuid.UUID
) -> VisitorMessage | None:
    """One message, if the visitor may see it."""
    row = await repository.visible_message(
        session,
        channel.workspace_id,
        channel_id=channel.id,
        contact_id=contact_id,
        message_id=message_id,
    )
    return visitor_message(row) if row is not None else None


def state_of(messages: list[VisitorMessage]) -> str:
    """A short digest of a window: it changes whenever a message appears or changes status."""
    text = "|".join(f"{m.id}:{m.status}" for m in messages)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


async def history(session: AsyncSession, channel: Channel, visitor: WebchatVisitor) -> MessagesOut:
    """The visitor's window, with its state for polling."""
    _requests.check((channel.id, visitor.id))
    messages = await window(session, channel, await contact_of(session, channel, visitor))
    return MessagesOut(messages=messages, state=state_of(messages))


def check_read(channel: Channel, visitor: WebchatVisitor) -> None:
    """The rate limit of the visitor's reads (history, polls)."""
    _requests.check((channel.id, visitor.id))


def concerns(
    event: Mapping[str, Any], channel_id: str, contact_id: str | None, visitor_id: uuid.UUID
) -> bool:
    """Whether a live event may change what this visitor sees.

    Before the visitor has a contact, only the processing of their own first message can
    give them one (its provider id starts with their visitor id).
    """
    if event.get("type") == "contact.merged":
        absorbed = (event.get("data") or {}).get("absorbed_id")
        return contact_id is not None and contact_id in (absorbed, event.get("contact_id"))
    if event.get("channel_id") != channel_id or not str(event.get("type", "")).startswith(
        "message."
    ):
        return False
    if contact_id is None:
        provider_id = str((event.get("data") or {}).get("provider_message_id") or "")
        return event.get("type") == "message.received" and provider_id.startswith(f"{visitor_id}:")
    return event.get("contact_id") == contact_id


def parse_event(text: str) -> dict[str, Any]:
    """A live event's public JSON."""
    data: dict[str, Any] = json.loads(text)
    return data
