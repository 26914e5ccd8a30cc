"""The path of a message, top to bottom.

Inbound: a provider calls a webhook → :func:`receive_webhook` verifies the signature over
the raw body and stores each item once per (channel, provider id), with an
``inbound.process`` job, in one transaction → the caller commits and answers 2xx → the worker
runs :func:`process_inbound`: resolve the contact, continue their conversation whatever the
channel, append the message, record events → after commit, live listeners hear of it.
Mail that Hilo reads itself (its SMTP listener, IMAP mailboxes) enters at
:func:`receive_raw` and takes the same path from there.

Outbound: ``conversations.service.do_create_message`` queues the reply with an
``outbound.send`` job → :func:`send_outbound` delivers it through the channel's adapter.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events, http
from hilo.attachments import service as attachments
from hilo.attachments import tasks as attachment_tasks
from hilo.calls import service as calls
from hilo.channels import consent
from hilo.channels import repository as channel_repository
from hilo.channels import service as channels
from hilo.channels.base import (
    AnswersKeywords,
    ChannelAdapter,
    ChannelContext,
    EmbedsFiles,
    InboundItem,
    IngestResult,
    OutboundMessage,
    RawRequest,
    ReplyContext,
    Sender,
    SendError,
)
from hilo.channels.registry import get_adapter
from hilo.clock import now
from hilo.contacts import repository as contact_repository
from hilo.contacts import service as contacts
from hilo.conversations import repository as conversation_repository
from hilo.conversations import service as conversations
from hilo.errors import NotFound
from hilo.events import Actor
from hilo.i18n import _, translate
from hilo.ids import new_id
from hilo.jobs.registry import RetryLater, job
from hilo.jobs.service import enqueue
from hilo.jobs.worker import JobContext
from hilo.models import Channel, Contact, Conversation, InboundEvent, Message, Workspace
from hilo.settings import get_settings

log = logging.getLogger(__name__)


async def receive_webhook(
    session: AsyncSession, *, channel_type: str, channel_id: uuid.UUID, request: RawRequest
) -> tuple[int, Any]:
    """Verify, store once, and say what the provider should be answered."""
    adapter = get_adapter(channel_type)
    channel = await channel_repository.get_for_webhook(session, channel_id)
    if channel is None or channel.type != channel_type or not channel.active:
        raise NotFound(_("Unknown channel."), code="unknown_channel")
    context = channels.context(channel)
    adapter.verify(request, context)
    return adapter.acknowledge(await _ingest(session, adapter, channel, context, request))


async def receive_raw(
    session: AsyncSession, *, channel: Channel, request: RawRequest
) -> list[IngestResult]:
    """Store once a delivery Hilo read itself (its SMTP listener, an IMAP mailbox).

    Nobody posted it, so there is no signature to check; the rest is the webhook's path.
    """
    adapter = get_adapter(channel.type)
    return await _ingest(session, adapter, channel, channels.context(channel), request)


async def _ingest(
    session: AsyncSession,
    adapter: ChannelAdapter,
    channel: Channel,
    context: ChannelContext,
    request: RawRequest,
) -> list[IngestResult]:
    items = adapter.parse_inbound(request, context)
    routed = await channels.route(session, adapter, channel, items, request)
    return [await _store_once(session, target, item, request) for target, item in routed]


async def answer_handshake(
    session: AsyncSession, *, channel_type: str, channel_id: uuid.UUID, request: RawRequest
) -> tuple[int, str]:
    """A provider's GET set-up check (Meta's ``hub.challenge``, for one)."""
    adapter = get_adapter(channel_type)
    channel = await channel_repository.get_for_webhook(session, channel_id)
    if channel is None or channel.type != channel_type:
        raise NotFound(_("Unknown channel."), code="unknown_channel")
    return adapter.handshake(request, channels.context(channel))


async def _store_once(
    session: AsyncSession, channel: Channel, item: InboundItem, request: RawRequest
) -> IngestResult:
    event_id, message_id = new_id(), new_id()
    inserted = await channel_repository.insert_inbound_once(
        session,
        {
            "id": event_id,
            "workspace_id": channel.workspace_id,
            "channel_id": channel.id,
            "provider_event_id": item.provider_event_id,
            "message_id": message_id,
            "raw_body": request.body,
            "item": item.to_json(),
            "status": "pending",
            "received_at": request.received_at,
        },
    )
    if inserted:
        enqueue(
            session,
            "inbound.process",
            {"inbound_event_id": str(event_id)},
            workspace_id=channel.workspace_id,
        )
        return IngestResult(item.provider_event_id, message_id, duplicate=False, answer=item.answer)
    existing = await channel_repository.existing_inbound(
        session, channel.id, item.provider_event_id
    )
    log.info("duplicate delivery on channel %s ignored", channel.id)
    return IngestResult(
        item.provider_event_id, existing.message_id, duplicate=True, answer=item.answer
    )


@job("inbound.process")
async def process_inbound(ctx: JobContext) -> None:
    """Turn a stored delivery into a message in the customer's one conversation."""
    async with ctx.db.transaction() as session:
        inbound = await session.get(InboundEvent, uuid.UUID(ctx.payload["inbound_event_id"]))
        if inbound is not None and inbound.status == "pending":
            item = InboundItem.from_json(inbound.item)
            if item.kind == "message" and item.sender is not None:
                await _deliver_message(session, inbound, item, is_sqlite=ctx.db.is_sqlite)
                inbound.status = "processed"
            elif item.kind == "status" and item.data.get("watermark"):
                found = await _apply_watermark(session, inbound, item)
                inbound.status = "processed" if found else "orphan"
            elif item.kind == "status":
                message = await _find_ours(session, inbound.channel_id, item)
                if message is None and ctx.job.attempts < STATUS_ATTEMPTS:
                    # The receipt can outrun our own record of the send: look again shortly.
                    raise RetryLater("status for an unknown message", delay=STATUS_RETRY)
                if message is not None:
                    _apply_status(session, message, item)
                inbound.status = "processed" if message else "orphan"
            elif item.kind == "call":
                message = await _find_ours(session, inbound.channel_id, item)
                if message is None and ctx.job.attempts < STATUS_ATTEMPTS:
                    # A callback can outrun the processing of the call it belongs to.
                    raise RetryLater("news of an unknown call", delay=STATUS_RETRY)
                if message is not None:
                    await calls.do_apply_update(session, message, item, at=inbound.received_at)
                inbound.status = "processed" if message else "orphan"
            elif item.kind == "identity" and item.sender is not None:
                await _join_identities(session, inbound, item)
                inbound.status = "processed"
            elif item.kind == "edit":
                message = await _find_ours(session, inbound.channel_id, item)
                if message is not None:
                    _apply_edit(session, message, item)
                inbound.status = "processed" if message else "orphan"
            else:
                inbound.status = "unsupported"
            inbound.processed_at = now()
        await ctx.finish(session)


STATUS_ATTEMPTS = 5
STATUS_RETRY = timedelta(seconds=2)
# Receipts only move a message forward: a late "delivered" never undoes "read".
STATUS_RANK = {"queued": 0, "sending": 0, "sent": 1, "delivered": 2, "read": 3}


async def _find_ours(
    session: AsyncSession, channel_id: uuid.UUID, item: InboundItem
) -> Message | None:
    provider_id = str(item.data.get("provider_message_id", ""))
    return await conversation_repository.by_provider_id(session, channel_id, provider_id)


def _apply_status(session: AsyncSession, message: Message, item: InboundItem) -> None:
    status = str(item.data.get("status", ""))
    current = STATUS_RANK.get(message.status, 0)
    if status == "failed":
        if current <= STATUS_RANK["sent"] and message.status != "failed":
            _mark(session, message, "failed", error=str(item.data.get("error") or "failed"))
    elif status in STATUS_RANK and STATUS_RANK[status] > current and message.status != "failed":
        _mark(session, message, status)


async def _apply_watermark(session: AsyncSession, inbound: InboundEvent, item: InboundItem) -> bool:
    """A receipt for every reply the sender was sent up to a time; False: unknown sender."""
    channel = await session.get_one(Channel, inbound.channel_id)
    identity = (
        await contact_repository.find_identity(
            session,
            channel.workspace_id,
            kind=get_adapter(channel.type).identity_kind,
            scope=channels.identity_scope(channel),
            value=item.sender.external_id,
        )
        if item.sender
        else None
    )
    if identity is None:
        return False
    # Compared with when the reply was written: its provider timestamp is a little later.
    for message in await conversation_repository.sent_to_contact_until(
        session,
        channel.workspace_id,
        channel_id=channel.id,
        contact_id=identity.contact_id,
        until=datetime.fromisoformat(str(item.data["watermark"])),
    ):
        _apply_status(session, message, item)
    return True


def _apply_edit(session: AsyncSession, message: Message, item: InboundItem) -> None:
    previous = message.text
    message.text = item.text
    message.updated_at = now()
    events.record(
        session,
        "message.edited",
        workspace_id=message.workspace_id,
        actor=Actor.contact(message.contact_id),
        channel_id=message.channel_id,
        conversation_id=message.conversation_id,
        contact_id=message.contact_id,
        message_id=message.id,
        # The trail keeps what the customer first wrote; erasure redacts it with the rest.
        data={"previous_text": previous},
    )


def _claims(
    channel: Channel, workspace: Workspace, sender: Sender
) -> tuple[contacts.Claim, list[contacts.Claim]]:
    """The identities a sender claims: their id on the channel, then a phone and an e-mail."""
    adapter = get_adapter(channel.type)
    claims: list[contacts.Claim] = []
    if sender.phone and (phone := contacts.normalise_phone(sender.phone, workspace.default_region)):
        claims.append(contacts.Claim("phone", "", phone, verified=sender.phone_verified))
    if sender.email and (email := contacts.normalise_email(sender.email)):
        claims.append(contacts.Claim("email", "", email, verified=sender.email_verified))
    own = contacts.Claim(
        adapter.identity_kind,
        channels.identity_scope(channel),
        sender.external_id,
        verified=sender.id_verified,
    )
    return own, claims


async def _join_identities(session: AsyncSession, inbound: InboundEvent, item: InboundItem) -> None:
    """The sender's new identity (WhatsApp's "user changed number") joins their contact."""
    assert item.sender is not None
    channel = await session.get_one(Channel, inbound.channel_id)
    workspace = await session.get_one(Workspace, inbound.workspace_id)
    old_claim, old_claims = _claims(channel, workspace, item.sender)
    new_claim, new_claims = _claims(channel, workspace, Sender(**item.data["new_sender"]))
    # Known elsewhere already, the new number becomes a merge suggestion, as any match does.
    await contacts.resolve_sender(
        session,
        workspace_id=workspace.id,
        sender_claim=old_claim,
        other_claims=[*old_claims, new_claim, *new_claims],
        name=item.sender.name,
        channel_id=channel.id,
    )


async def _deliver_message(
    session: AsyncSession, inbound: InboundEvent, item: InboundItem, *, is_sqlite: bool
) -> None:
    assert item.sender is not None
    channel = await session.get_one(Channel, inbound.channel_id)
    workspace = await session.get_one(Workspace, inbound.workspace_id)
    adapter = get_adapter(channel.type)
    sender = item.sender
    sender_claim, claims = _claims(channel, workspace, sender)
    resolution = await contacts.resolve_sender(
        session,
        workspace_id=workspace.id,
        sender_claim=sender_claim,
        other_claims=claims,
        name=sender.name,
        channel_id=channel.id,
    )
    contact = resolution.contact
    if not resolution.created:
        await contact_repository.lock(session, contact, is_sqlite=is_sqlite)
    window_days = workspace.reopen_window_days or get_settings().reopen_window_days
    thread = await conversations.thread_of(
        session,
        workspace_id=workspace.id,
        contact_id=contact.id,
        conversation_id=item.thread_conversation_id,
        provider_ids=item.thread_refs,
    )
    conversation = await conversations.continue_for_inbound(
        session,
        workspace=workspace,
        contact=contact,
        channel_id=channel.id,
        at=inbound.received_at,
        reopen_window=timedelta(days=window_days),
        thread=thread,
    )
    message = conversations.do_append_inbound(
        session,
        conversation=conversation,
        contact=contact,
        message_id=inbound.message_id,
        channel_id=channel.id,
        channel_type=channel.type,
        provider_message_id=item.provider_event_id,
        text=item.text,
        attachments=item.attachments,
        data=item.data,
        sent_at=datetime.fromisoformat(item.sent_at) if item.sent_at else None,
        at=inbound.received_at,
        inbound_event_id=inbound.id,
    )
    if isinstance(adapter, EmbedsFiles) and message.attachments:
        await _keep_embedded_files(session, adapter, inbound, message)
    attachment_tasks.enqueue_if_pending(session, message)
    handled = adapter.provider_keywords if isinstance(adapter, AnswersKeywords) else {}
    choice = consent.keyword_choice(item.text, handled) if adapter.supports_opt_out else None
    if choice is not None:
        confirm = consent.keyword(item.text) not in handled
        await _honour_keyword(
            session, workspace, channel, conversation, contact, message, choice, confirm=confirm
        )


async def _keep_embedded_files(
    session: AsyncSession, adapter: EmbedsFiles, inbound: InboundEvent, message: Message
) -> None:
    """Files that came inside the delivery itself (an e-mail's parts) are kept at once."""
    contents = adapter.embedded_files(inbound.raw_body, message.attachments)
    if all(content is None for content in contents):
        return
    await session.flush()  # the files reference the message's row
    limit = get_settings().media_max_bytes
    kept: list[dict[str, Any]] = []
    for attachment, content in zip(message.attachments, contents, strict=True):
        if content is None or len(content) > limit:
            kept.append(attachment if content is None else {**attachment, "status": "oversize"})
            continue
        mime_type = str(attachment.get("mime_type") or "")
        row = attachments.do_store(
            session,
            workspace_id=message.workspace_id,
            message_id=message.id,
            kind=str(attachment.get("type") or attachments.kind_of(mime_type)),
            mime_type=mime_type,
            filename=attachment.get("filename"),
            content=content,
        )
        kept.append({**attachment, **attachments.entry(row)})
    message.attachments = kept


async def _honour_keyword(
    session: AsyncSession,
    workspace: Workspace,
    channel: Channel,
    conversation: Conversation,
    contact: Contact,
    message: Message,
    choice: str,
    *,
    confirm: bool,
) -> None:
    """STOP / BAJA / CANCELAR or START / ALTA: recorded at once, and confirmed (unless the
    provider answered the customer itself)."""
    await consent.do_record(
        session,
        workspace_id=workspace.id,
        contact_id=contact.id,
        channel_id=channel.id,
        choice=choice,
        conversation_id=conversation.id,
    )
    if not confirm:
        return
    locale = contact.locale or workspace.default_locale
    confirmation = Message(
        workspace_id=workspace.id,
        conversation_id=conversation.id,
        contact_id=contact.id,
        sender_type="system",
        text=translate(consent.CONFIRMATIONS[choice], locale),
        created_at=message.created_at + timedelta(microseconds=1),
        updated_at=message.created_at,
    )
    await conversations.do_queue_outbound(
        session, conversation, channel, confirmation, actor=Actor.system()
    )


@job("outbound.send")
async def send_outbound(ctx: JobContext) -> None:
    """Deliver a queued reply once; retry with backoff; give up after the configured hours.

    The shared rules of every channel live here: notes are never sent, a customer's own
    message is never echoed back, and a failure is recorded on the message.
    """
    message_id = uuid.UUID(ctx.payload["message_id"])
    async with ctx.db.transaction() as session:
        message = await session.get(Message, message_id)
        if message is None or message.kind != "outbound" or message.status != "queued":
            await ctx.finish(session)
            return
        channel = await session.get_one(Channel, message.channel_id)
        recipient = await channels.recipient(session, channel, message.contact_id)
        opted_out = await consent.is_opted_out(session, message.contact_id, channel.id)
        context = channels.context(channel)
        answered = await conversation_repository.last_inbound(
            session,
            message.workspace_id,
            conversation_id=message.conversation_id,
            channel_id=channel.id,
        )
        outbound = OutboundMessage(
            message_id=message.id,
            conversation_id=message.conversation_id,
            recipient=recipient or "",
            text=message.text,
            created_at=message.created_at,
            attachments=attachments.with_links(message.attachments),
            data=message.data,
            in_reply_to=ReplyContext(answered.provider_message_id, answered.data)
            if answered is not None
            else None,
        )
    give_up_at = message.created_at + timedelta(hours=get_settings().outbound_give_up_hours)
    try:
        if recipient is None:
            raise SendError("the contact has no address on this channel", retryable=False)
        if opted_out and message.sender_type != "system":
            # Queued before the customer opted out: it must not go out now.
            raise SendError("the contact opted out of this channel", retryable=False)
        result = await get_adapter(channel.type).send(http.client(), context, outbound)
    except SendError as exc:
        if exc.retryable and now() < give_up_at:
            async with ctx.db.transaction() as session:
                row = await session.get_one(Message, message_id)
                row.error = str(exc)[:2000]
            # The provider's words often name the recipient: kept on the message, not logged.
            log.warning("delivery of message %s failed, will retry", message_id)
            log.debug("delivery of message %s failed: %s", message_id, exc)
            delay = timedelta(seconds=exc.retry_after) if exc.retry_after else None
            raise RetryLater(str(exc), delay=delay) from exc
        async with ctx.db.transaction() as session:
            row = await session.get_one(Message, message_id)
            _mark(session, row, "failed", error=str(exc))
            await ctx.finish(session)
        return
    async with ctx.db.transaction() as session:
        row = await session.get_one(Message, message_id)
        row.provider_message_id = result.provider_message_id
        _mark(session, row, "sent")
        for follow_up in result.follow_ups:
            enqueue(
                session,
                follow_up.name,
                follow_up.payload,
                workspace_id=row.workspace_id,
                run_at=now() + follow_up.delay,
            )
        await ctx.finish(session)


def _mark(
    session: AsyncSession, message: Message, status: str, *, error: str | None = None
) -> None:
    message.status = status
    message.updated_at = now()
    message.error = error[:2000] if error else None
    data: dict[str, Any] = {"status": status}
    if error:
        data["error"] = error[:500]
    events.record_on_message(session, f"message.{status}", message, data=data)
