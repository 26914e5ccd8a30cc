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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
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
from hilo.db import Database, GroupCommit, keep
from hilo.errors import NotFound
from hilo.events import Actor
from hilo.i18n import _, translate
from hilo.ids import new_id
from hilo.jobs.registry import RetryLater, batch_handler, job
from hilo.jobs.service import enqueue
from hilo.jobs.worker import JobContext, finish_all
from hilo.models import Channel, Contact, Conversation, InboundEvent, Message, Workspace
from hilo.settings import get_settings

log = logging.getLogger(__name__)


# What a webhook hands to the group commit: each item with its channel and its request.
Delivery = tuple[Channel, InboundItem, RawRequest]


async def receive_webhook(
    db: Database,
    store: GroupCommit[Delivery, IngestResult],
    *,
    channel_type: str,
    channel_id: uuid.UUID,
    request: RawRequest,
) -> tuple[int, Any]:
    """Verify, store once, and say what the provider should be answered.

    Deliveries arriving together are committed together (``store``); each is answered only
    once the commit that holds it is done.
    """
    adapter, deliveries = await _verified(db, channel_type, channel_id, request)
    return adapter.acknowledge(await store.submit(deliveries))


async def receive_in(
    session: AsyncSession, *, channel_type: str, channel_id: uuid.UUID, request: RawRequest
) -> tuple[int, Any]:
    """:func:`receive_webhook` inside the caller's transaction (a body Hilo built and signed
    itself: a web-chat visitor's message, a form post)."""
    adapter, deliveries = await _verified(
        session.info["hilo_db"], channel_type, channel_id, request
    )
    return adapter.acknowledge(await store_deliveries(session, deliveries))


async def _verified(
    db: Database, channel_type: str, channel_id: uuid.UUID, request: RawRequest
) -> tuple[ChannelAdapter, list[Delivery]]:
    adapter = get_adapter(channel_type)
    found = await channels.for_webhook(db, channel_id)
    if found is None or found[0].type != channel_type or not found[0].active:
        raise NotFound(_("Unknown channel."), code="unknown_channel")
    channel, context = found
    adapter.verify(request, context)
    items = adapter.parse_inbound(request, context)
    routed = await channels.route(db, adapter, channel, items, request)
    return adapter, [(target, item, request) for target, item in routed]


async def receive_raw(
    session: AsyncSession, *, channel: Channel, request: RawRequest
) -> list[IngestResult]:
    """Store once a delivery Hilo read itself (its SMTP listener, an IMAP mailbox), in the
    caller's transaction.

    Nobody posted it, so there is no signature to check; the rest is the webhook's path.
    """
    adapter = get_adapter(channel.type)
    items = adapter.parse_inbound(request, channels.context(channel))
    db: Database = session.info["hilo_db"]
    routed = await channels.route(db, adapter, channel, items, request)
    return await store_deliveries(session, [(target, item, request) for target, item in routed])


async def answer_handshake(
    session: AsyncSession, *, channel_type: str, channel_id: uuid.UUID, request: RawRequest
) -> tuple[int, str]:
    """A provider's GET set-up check (Meta's ``hub.challenge``, for one)."""
    adapter = get_adapter(channel_type)
    channel = await channel_repository.get_for_webhook(session, channel_id)
    if channel is None or channel.type != channel_type:
        raise NotFound(_("Unknown channel."), code="unknown_channel")
    return adapter.handshake(request, channels.context(channel))


async def store_deliveries(
    session: AsyncSession, deliveries: Sequence[Delivery]
) -> list[IngestResult]:
    """Store each item once per (channel, provider id), with an ``inbound.process`` job; a
    redelivery is answered with the message id the first delivery was given."""
    if not deliveries:  # a delivery with nothing to keep (a filled honeypot, a ping)
        return []
    rows: list[dict[str, Any]] = [
        {
            "id": new_id(),
            "workspace_id": channel.workspace_id,
            "channel_id": channel.id,
            "provider_event_id": item.provider_event_id,
            "message_id": new_id(),
            "raw_body": request.body,
            "item": item.to_json(),
            "status": "pending",
            "received_at": request.received_at,
        }
        for channel, item, request in deliveries
    ]
    inserted = await channel_repository.insert_inbound_many(session, rows)
    repeated = [
        (row["channel_id"], row["provider_event_id"]) for row in rows if row["id"] not in inserted
    ]
    earlier = await channel_repository.message_ids_of(session, repeated) if repeated else {}
    results: list[IngestResult] = []
    for row, (channel, item, _request) in zip(rows, deliveries, strict=True):
        if row["id"] in inserted:
            enqueue(
                session,
                "inbound.process",
                {"inbound_event_id": str(row["id"])},
                workspace_id=channel.workspace_id,
            )
            message_id = row["message_id"]
        else:
            log.info("duplicate delivery on channel %s ignored", channel.id)
            message_id = earlier[(channel.id, item.provider_event_id)]
        results.append(
            IngestResult(
                item.provider_event_id,
                message_id,
                duplicate=row["id"] not in inserted,
                answer=item.answer,
            )
        )
    return results


# Sized so that on SQLite a batch holds the one write lock for tens of milliseconds.
INBOUND_BATCH = 20


@job("inbound.process", batch=INBOUND_BATCH)
async def process_inbound(ctx: JobContext) -> None:
    """Turn a stored delivery into a message in the customer's one conversation."""
    async with ctx.transaction() as session:
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


@batch_handler("inbound.process")
async def process_inbound_batch(session: AsyncSession, batch: list[JobContext]) -> None:
    """A batch of deliveries in one transaction, with a few queries for all of them.

    A customer's text, from a known sender or a new one, into their open, resolved or new
    conversation, is decided for the whole batch at once (:class:`_Batch`), by the rules of
    ``contacts.resolve_sender`` and ``conversations.continue_for_inbound`` and with their
    functions. Anything else (a claim that needs a merge suggestion, files, a thread named,
    a keyword, receipts, calls, an earlier message arriving after a later one) takes
    :func:`process_inbound`, one by one, in the same transaction, after the rest.
    """
    plan = _Batch(session, batch, await _load_batch(session, batch))
    await plan.run()
    await finish_all(session, plan.done)
    log.debug("inbound batch: %d at once, %d one by one", len(plan.done), len(plan.slow))
    for ctx in plan.slow:
        if ctx in plan.receipts:
            ctx.alone = True  # it may have to wait for its message: not in the batch
        else:
            await process_inbound(ctx)


async def _load_batch(
    session: AsyncSession, batch: list[JobContext]
) -> dict[uuid.UUID, InboundEvent]:
    """The batch's deliveries, their channels and workspaces, in three queries, kept for the
    batch so that no job looks them up again."""
    ids = [uuid.UUID(ctx.payload["inbound_event_id"]) for ctx in batch]
    rows = list(await session.scalars(select(InboundEvent).where(InboundEvent.id.in_(ids))))
    channel_ids = {row.channel_id for row in rows}
    workspace_ids = {row.workspace_id for row in rows}
    keep(session, *rows)
    keep(session, *await session.scalars(select(Channel).where(Channel.id.in_(channel_ids))))
    keep(session, *await session.scalars(select(Workspace).where(Workspace.id.in_(workspace_ids))))
    return {row.id: row for row in rows}


@dataclass
class _Text:
    """A plain text of a batch: the job, its delivery, and the identities its sender claims."""

    ctx: JobContext
    inbound: InboundEvent
    item: InboundItem
    channel: Channel
    claims: list[contacts.Claim]

    @property
    def keys(self) -> list[tuple[str, str, str]]:
        return [(c.kind, c.scope, c.value) for c in self.claims]


class _Batch:
    """Decides and records a batch's plain texts; the rest is left in ``slow``."""

    def __init__(
        self, session: AsyncSession, batch: list[JobContext], rows: dict[uuid.UUID, InboundEvent]
    ) -> None:
        self.session = session
        self.batch = batch
        self.rows = rows
        self.done: list[JobContext] = []
        self.slow: list[JobContext] = []
        # News of earlier messages (receipts, call updates, edits), which may outrun them.
        self.receipts: list[JobContext] = []

    async def run(self) -> None:
        texts: dict[uuid.UUID, list[_Text]] = {}
        for ctx in self.batch:
            text = await self._plain_text(ctx)
            if text is None:
                self.slow.append(ctx)
            else:
                texts.setdefault(text.inbound.workspace_id, []).append(text)
        for workspace_id, entries in texts.items():
            await self._workspace(await self.session.get_one(Workspace, workspace_id), entries)
        self.slow.sort(key=self.batch.index)  # in the order they were queued

    async def _plain_text(self, ctx: JobContext) -> _Text | None:
        """The delivery, if it is a sender's text and nothing more: no files, no thread
        named, no keyword."""
        inbound = self.rows.get(uuid.UUID(ctx.payload["inbound_event_id"]))
        if inbound is None or inbound.status != "pending":
            return None
        item = InboundItem.from_json(inbound.item)
        if item.kind in ("status", "call", "edit"):
            self.receipts.append(ctx)
            return None
        if item.kind != "message" or item.sender is None:
            return None
        if item.attachments or item.thread_conversation_id or item.thread_refs:
            return None
        channel = await self.session.get_one(Channel, inbound.channel_id)
        adapter = get_adapter(channel.type)
        handled = adapter.provider_keywords if isinstance(adapter, AnswersKeywords) else {}
        if adapter.supports_opt_out and consent.keyword_choice(item.text, handled):
            return None
        workspace = await self.session.get_one(Workspace, inbound.workspace_id)
        own, others = _claims(channel, workspace, item.sender)
        return _Text(ctx, inbound, item, channel, [own, *others])

    async def _workspace(self, workspace: Workspace, entries: list[_Text]) -> None:
        session = self.session
        window = timedelta(days=workspace.reopen_window_days or get_settings().reopen_window_days)
        known = {
            (i.kind, i.scope, i.value): i
            for i in await contact_repository.identities_matching(
                session, workspace.id, [key for text in entries for key in text.keys]
            )
        }
        people: dict[uuid.UUID, Contact] = {}
        unresolved: dict[uuid.UUID, Conversation] = {}
        resolved: dict[uuid.UUID, Conversation] = {}
        latest: dict[uuid.UUID, tuple[datetime, uuid.UUID]] = {}
        if known:
            is_sqlite = session.info["hilo_db"].is_sqlite
            locked = await contact_repository.lock_many(
                session, workspace.id, [i.contact_id for i in known.values()], is_sqlite=is_sqlite
            )
            people = {c.id: c for c in locked}
            live = [c.id for c in locked if c.merged_into_id is None]
            earliest = min(text.inbound.received_at for text in entries) - window
            if live:
                unresolved = await conversation_repository.latest_unresolved_of(
                    session, workspace.id, live
                )
                resolved = await conversation_repository.latest_resolved_of(
                    session, workspace.id, live, earliest
                )
            ids = [c.id for c in (*unresolved.values(), *resolved.values())]
            if ids:
                latest = await conversation_repository.latest_inbound_of(session, workspace.id, ids)
        # What this batch chose for each contact, and what it had to leave to the slow path.
        current: dict[uuid.UUID, Conversation] = {}
        left_keys: set[tuple[str, str, str]] = set()
        left_contacts: set[uuid.UUID] = set()
        ordered = sorted(entries, key=lambda t: (t.inbound.received_at, str(t.inbound.id)))
        for text in ordered:
            at = text.inbound.received_at
            found = [known.get(key) for key in text.keys]
            holders = {f.contact_id for f in found if f is not None}
            owner = found[0].contact_id if found[0] is not None else None
            if owner is None:
                owner = next(
                    (
                        f.contact_id
                        for c, f in zip(text.claims[1:], found[1:], strict=True)
                        if f is not None and c.verified and f.verified
                    ),
                    None,
                )
            contact = people.get(owner) if owner is not None else None
            conversation: Conversation | None = None
            if contact is not None:
                conversation = current.get(contact.id) or unresolved.get(contact.id)
                old = resolved.get(contact.id)
                if conversation is None and old is not None and old.resolved_at is not None:
                    conversation = old if old.resolved_at >= at - window else None
            before = latest.get(conversation.id) if conversation is not None else None
            if (
                left_keys.intersection(text.keys)
                or left_contacts.intersection(holders)
                # A claim held by someone else: a merge suggestion (or an unverified match).
                or (holders and holders != {owner})
                or (owner is not None and (contact is None or contact.merged_into_id))
                # A later message of the conversation is in: placing this one takes care.
                or (before is not None and before[0] > at)
            ):
                left_keys.update(text.keys)
                left_contacts.update(holders)
                self.slow.append(text.ctx)
                continue
            contact, conversation = self._record(text, contact, conversation, before, known)
            people[contact.id] = contact
            current[contact.id] = conversation
            latest[conversation.id] = (at, text.channel.id)
            self.done.append(text.ctx)

    def _record(
        self,
        text: _Text,
        contact: Contact | None,
        conversation: Conversation | None,
        before: tuple[datetime, uuid.UUID] | None,
        known: dict[tuple[str, str, str], Any],
    ) -> tuple[Contact, Conversation]:
        """What ``_deliver_message`` records for a plain text, decided above."""
        session, inbound, item, channel = self.session, text.inbound, text.item, text.channel
        assert item.sender is not None
        if contact is None:
            contact = contacts.new_contact(
                session,
                workspace_id=inbound.workspace_id,
                name=item.sender.name,
                channel_id=channel.id,
            )
        elif item.sender.name and not contact.name:
            contact.name = item.sender.name
        for claim, key in zip(text.claims, text.keys, strict=True):
            found = known.get(key)
            if found is None:
                known[key] = contacts.add_identity(session, contact, claim, channel_id=channel.id)
            elif claim.verified and not found.verified:
                found.verified = True
        at = inbound.received_at
        if conversation is None:
            conversation = conversations.new_for_inbound(
                session, contact, channel_id=channel.id, at=at
            )
        else:
            conversations.reopen_for_inbound(session, conversation)
            conversations.note_latest_channel(
                session,
                conversation,
                contact,
                channel_id=channel.id,
                before=before[1] if before is not None else None,
            )
        message = _append(session, conversation, contact, channel, inbound, item)
        attachment_tasks.enqueue_if_pending(session, message)
        inbound.status = "processed"
        inbound.processed_at = now()
        return contact, conversation


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
    message = _append(session, conversation, contact, channel, inbound, item)
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


def _append(
    session: AsyncSession,
    conversation: Conversation,
    contact: Contact,
    channel: Channel,
    inbound: InboundEvent,
    item: InboundItem,
) -> Message:
    """The customer's message, as the delivery stored it, appended to the conversation."""
    return conversations.do_append_inbound(
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
