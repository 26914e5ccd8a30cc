"""Queries on conversations, messages and labels; every one is scoped to a workspace."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, exists, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from hilo.models import Conversation, ConversationLabel, Message
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
) -> list[Conversation]:
    """Conversations newest activity first, filtered."""
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
        .order_by(ConversationLabel.label)
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
) -> list[Message]:
    """Messages oldest first, of one conversation or of every conversation of a contact."""
    query = scoped(Message, workspace_id)
    if conversation_id is not None:
        query = query.where(Message.conversation_id == conversation_id)
    if contact_id is not None:
        query = query.where(Message.contact_id == contact_id)
    if after is not None:
        query = query.where(
            tuple_(Message.created_at, Message.id)
            > tuple_(literal(after[0], Message.created_at.type), literal(after[1], Message.id.type))
        )
    query = query.order_by(Message.created_at, Message.id).limit(limit)
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
