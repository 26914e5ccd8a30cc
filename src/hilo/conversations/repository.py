"""Queries on conversations, messages and labels; every one is scoped to a workspace."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, exists, func, literal, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from hilo.contacts.repository import contains_pattern
from hilo.models import Contact, ContactIdentity, Conversation, ConversationLabel, Message
from hilo.scoping import get_scoped, scoped

UNRESOLVED = ("open", "pending", "snoozed")


async def get(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> Conversation:
    """A conversation of the workspace, or NotFound."""
    return await get_scoped(
        session, Conversation, conversation_id, workspace_id, for_update=for_update
    )


async def find(
    session: AsyncSession, workspace_id: uuid.UUID, conversation_id: uuid.UUID
) -> Conversation | None:
    """A conversation of the workspace, or None."""
    query = scoped(Conversation, workspace_id).where(Conversation.id == conversation_id)
    return (await session.scalars(query)).first()


async def thread_by_provider_ids(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    contact_id: uuid.UUID,
    provider_ids: list[str],
) -> Conversation | None:
    """The contact's conversation holding the first of ``provider_ids`` found."""
    rows = await session.execute(
        select(Message.provider_message_id, Message.conversation_id).where(
            Message.workspace_id == workspace_id,
            Message.contact_id == contact_id,
            Message.provider_message_id.in_(provider_ids),
        )
    )
    found = {provider_id: conversation_id for provider_id, conversation_id in rows}
    for provider_id in provider_ids:
        if provider_id in found:
            return await find(session, workspace_id, found[provider_id])
    return None


async def last_inbound(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    conversation_id: uuid.UUID,
    channel_id: uuid.UUID,
) -> Message | None:
    """The customer's latest message of the conversation on that channel."""
    query = (
        scoped(Message, workspace_id)
        .where(
            Message.conversation_id == conversation_id,
            Message.channel_id == channel_id,
            Message.kind == "inbound",
        )
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(1)
    )
    return (await session.scalars(query)).first()


async def inbound_neighbours(
    session: AsyncSession, workspace_id: uuid.UUID, *, conversation_id: uuid.UUID, at: datetime
) -> tuple[Message | None, Message | None]:
    """The customer's messages of the conversation just before and just after ``at``."""
    base = scoped(Message, workspace_id).where(
        Message.conversation_id == conversation_id,
        Message.kind == "inbound",
        Message.channel_id.is_not(None),
    )
    before = base.where(Message.created_at <= at).order_by(
        Message.created_at.desc(), Message.id.desc()
    )
    after = base.where(Message.created_at > at).order_by(Message.created_at, Message.id)
    return (
        (await session.scalars(before.limit(1))).first(),
        (await session.scalars(after.limit(1))).first(),
    )


async def inbound_channels(
    session: AsyncSession, workspace_id: uuid.UUID, *, conversation_id: uuid.UUID
) -> list[uuid.UUID]:
    """The channels the customer wrote on in the conversation, most recently used first."""
    latest = func.max(Message.created_at)
    query = (
        scoped(Message, workspace_id)
        .with_only_columns(Message.channel_id)
        .where(
            Message.conversation_id == conversation_id,
            Message.kind == "inbound",
            Message.channel_id.is_not(None),
        )
        .group_by(Message.channel_id)
        .order_by(latest.desc())
    )
    return [row for row in (await session.scalars(query)).all() if row is not None]


async def latest_unresolved(
    session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID
) -> Conversation | None:
    """The contact's most recently active conversation that is not resolved."""
    query = (
        scoped(Conversation, workspace_id)
        .where(Conversation.contact_id == contact_id, Conversation.status.in_(UNRESOLVED))
        .order_by(Conversation.last_activity_at.desc())
        .limit(1)
    )
    return (await session.scalars(query)).first()


async def latest_unresolved_of(
    session: AsyncSession, workspace_id: uuid.UUID, contact_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Conversation]:
    """:func:`latest_unresolved` of several contacts, in one query."""
    query = (
        scoped(Conversation, workspace_id)
        .where(Conversation.contact_id.in_(set(contact_ids)), Conversation.status.in_(UNRESOLVED))
        .order_by(Conversation.last_activity_at.desc())
    )
    return _first_of_each_contact(await session.scalars(query))


async def latest_resolved_of(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    contact_ids: Sequence[uuid.UUID],
    since: datetime,
) -> dict[uuid.UUID, Conversation]:
    """:func:`latest_resolved_since` of several contacts, in one query."""
    query = (
        scoped(Conversation, workspace_id)
        .where(
            Conversation.contact_id.in_(set(contact_ids)),
            Conversation.status == "resolved",
            Conversation.resolved_at >= since,
        )
        .order_by(Conversation.resolved_at.desc())
    )
    return _first_of_each_contact(await session.scalars(query))


def _first_of_each_contact(rows: Iterable[Conversation]) -> dict[uuid.UUID, Conversation]:
    first: dict[uuid.UUID, Conversation] = {}
    for conversation in rows:
        first.setdefault(conversation.contact_id, conversation)
    return first


async def latest_inbound_of(
    session: AsyncSession, workspace_id: uuid.UUID, conversation_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[datetime, uuid.UUID]]:
    """The time and channel of the customer's latest message in each conversation (the one
    :func:`inbound_neighbours` calls "before" for any later time), in one query."""
    inbound = (Message.kind == "inbound", Message.channel_id.is_not(None))
    newest = (
        select(func.max(Message.created_at))
        .where(Message.conversation_id == Conversation.id, *inbound)
        .correlate(Conversation)
        .scalar_subquery()
    )
    query = (
        select(Message.conversation_id, Message.created_at, Message.id, Message.channel_id)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Conversation.workspace_id == workspace_id,
            Conversation.id.in_(set(conversation_ids)),
            Message.created_at == newest,
            *inbound,
        )
        .order_by(Message.id)
    )
    latest: dict[uuid.UUID, tuple[datetime, uuid.UUID]] = {}
    for conversation_id, created_at, _id, channel_id in await session.execute(query):
        latest[conversation_id] = (created_at, channel_id)  # the last of a tie, as there
    return latest


async def latest_resolved_since(
    session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID, since: datetime
) -> Conversation | None:
    """The contact's conversation resolved most recently, if after ``since``."""
    query = (
        scoped(Conversation, workspace_id)
        .where(
            Conversation.contact_id == contact_id,
            Conversation.status == "resolved",
            Conversation.resolved_at >= since,
        )
        .order_by(Conversation.resolved_at.desc())
        .limit(1)
    )
    return (await session.scalars(query)).first()


async def inbox_page(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    status: str | None,
    channel_id: uuid.UUID | None,
    assignee_id: uuid.UUID | None,
    unassigned: bool,
    team_id: uuid.UUID | None,
    label: str | None,
    contact_id: uuid.UUID | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    q: str | None = None,
) -> list[Conversation]:
    """Conversations newest activity first, filtered; ``q`` searches the contact's name and
    identities and the text of the conversation's messages."""
    query = scoped(Conversation, workspace_id)
    if status:
        query = query.where(Conversation.status == status)
    if channel_id:
        query = query.where(Conversation.last_channel_id == channel_id)
    if assignee_id:
        query = query.where(Conversation.assignee_id == assignee_id)
    if unassigned:
        query = query.where(Conversation.assignee_id.is_(None))
    if team_id:
        query = query.where(Conversation.team_id == team_id)
    if contact_id:
        query = query.where(Conversation.contact_id == contact_id)
    if label:
        query = query.where(
            exists().where(
                ConversationLabel.conversation_id == Conversation.id,
                ConversationLabel.label == label,
            )
        )
    if q:
        pattern = contains_pattern(q)
        query = query.where(
            or_(
                exists().where(
                    Contact.id == Conversation.contact_id,
                    func.lower(Contact.name).like(pattern, escape="\\"),
                ),
                exists().where(
                    ContactIdentity.contact_id == Conversation.contact_id,
                    ContactIdentity.workspace_id == workspace_id,
                    func.lower(ContactIdentity.value).like(pattern, escape="\\"),
                ),
                exists().where(
                    Message.conversation_id == Conversation.id,
                    Message.workspace_id == workspace_id,
                    func.lower(Message.text).like(pattern, escape="\\"),
                ),
            )
        )
    if after is not None:
        query = query.where(
            tuple_(Conversation.last_activity_at, Conversation.id)
            < tuple_(
                literal(after[0], Conversation.last_activity_at.type),
                literal(after[1], Conversation.id.type),
            )
        )
    query = query.order_by(Conversation.last_activity_at.desc(), Conversation.id.desc())
    return list((await session.scalars(query.limit(limit))).all())


async def labels_of(
    session: AsyncSession, workspace_id: uuid.UUID, conversation_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[str]]:
    """Labels of several conversations, sorted."""
    result: dict[uuid.UUID, list[str]] = {cid: [] for cid in conversation_ids}
    if not conversation_ids:
        return result
    rows = await session.execute(
        select(ConversationLabel.conversation_id, ConversationLabel.label)
        .where(
            ConversationLabel.workspace_id == workspace_id,
            ConversationLabel.conversation_id.in_(conversation_ids),
        )
        # The primary key's order: SQLite then reads the key, not every label of the workspace.
        .order_by(ConversationLabel.conversation_id, ConversationLabel.label)
    )
    for conversation_id, label in rows:
        result[conversation_id].append(label)
    return result


async def has_label(session: AsyncSession, conversation_id: uuid.UUID, label: str) -> bool:
    """Whether the conversation carries ``label``."""
    row = await session.get(ConversationLabel, (conversation_id, label))
    return row is not None


async def remove_label(session: AsyncSession, conversation_id: uuid.UUID, label: str) -> bool:
    """Take ``label`` off; whether it was there."""
    result = await session.execute(
        delete(ConversationLabel).where(
            ConversationLabel.conversation_id == conversation_id, ConversationLabel.label == label
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def messages_page(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    conversation_id: uuid.UUID | None = None,
    contact_id: uuid.UUID | None = None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    newest_first: bool = False,
) -> list[Message]:
    """Messages oldest first (or newest first), of one conversation or of every conversation
    of a contact."""
    query = scoped(Message, workspace_id)
    if conversation_id is not None:
        query = query.where(Message.conversation_id == conversation_id)
    if contact_id is not None:
        query = query.where(Message.contact_id == contact_id)
    if after is not None:
        key = tuple_(Message.created_at, Message.id)
        cursor = tuple_(
            literal(after[0], Message.created_at.type), literal(after[1], Message.id.type)
        )
        query = query.where(key < cursor if newest_first else key > cursor)
    if newest_first:
        query = query.order_by(Message.created_at.desc(), Message.id.desc())
    else:
        query = query.order_by(Message.created_at, Message.id)
    query = query.limit(limit)
    return list((await session.scalars(query)).all())


async def get_message(
    session: AsyncSession, workspace_id: uuid.UUID, message_id: uuid.UUID
) -> Message:
    """A message of the workspace, or NotFound."""
    return await get_scoped(session, Message, message_id, workspace_id)


async def by_provider_id(
    session: AsyncSession, channel_id: uuid.UUID, provider_message_id: str
) -> Message | None:
    """The message a provider knows by that id on that channel."""
    if not provider_message_id:
        return None
    query = select(Message).where(
        Message.channel_id == channel_id, Message.provider_message_id == provider_message_id
    )
    return (await session.scalars(query.limit(1))).first()


async def sent_to_contact_until(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    channel_id: uuid.UUID,
    contact_id: uuid.UUID,
    until: datetime,
) -> list[Message]:
    """Replies on the channel to the contact, written by ``until`` and sent, not yet read."""
    query = (
        scoped(Message, workspace_id)
        .where(
            Message.channel_id == channel_id,
            Message.contact_id == contact_id,
            Message.kind == "outbound",
            Message.status.in_(("sent", "delivered")),
            Message.created_at <= until,
        )
        .order_by(Message.created_at, Message.id)
    )
    return list((await session.scalars(query)).all())
