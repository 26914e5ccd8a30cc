"""Read side of conversations: pages of conversations, messages and events."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events, pagination
from hilo.conversations import repository
from hilo.conversations.schemas import (
    ConversationOut,
    ConversationPage,
    EventOut,
    EventPage,
    MessageOut,
    MessagePage,
)
from hilo.models import Event
from hilo.scoping import scoped


async def conversation(
    session: AsyncSession, workspace_id: uuid.UUID, conversation_id: uuid.UUID
) -> ConversationOut:
    """One conversation with its labels."""
    row = await repository.get(session, workspace_id, conversation_id)
    labels = await repository.labels_of(session, workspace_id, [row.id])
    return ConversationOut.build(row, labels[row.id])


async def inbox(
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
    cursor: str | None,
    limit: int,
    q: str | None = None,
) -> ConversationPage:
    """A page of the inbox, newest activity first."""
    rows = await repository.inbox_page(
        session,
        workspace_id,
        status=status,
        channel_id=channel_id,
        assignee_id=assignee_id,
        unassigned=unassigned,
        team_id=team_id,
        label=label,
        contact_id=contact_id,
        after=pagination.decode_time_id(cursor),
        limit=limit + 1,
        q=q,
    )
    page, next_cursor = pagination.cut(rows, limit, lambda c: (c.last_activity_at, c.id))
    labels = await repository.labels_of(session, workspace_id, [c.id for c in page])
    return ConversationPage(
        items=[ConversationOut.build(c, labels[c.id]) for c in page], next_cursor=next_cursor
    )


async def messages(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    conversation_id: uuid.UUID | None = None,
    contact_id: uuid.UUID | None = None,
    cursor: str | None,
    limit: int,
    newest_first: bool = False,
) -> MessagePage:
    """Messages oldest first (or newest first), of a conversation or of all a contact's
    conversations."""
    rows = await repository.messages_page(
        session,
        workspace_id,
        conversation_id=conversation_id,
        contact_id=contact_id,
        after=pagination.decode_time_id(cursor),
        limit=limit + 1,
        newest_first=newest_first,
    )
    page, next_cursor = pagination.cut(rows, limit, lambda m: (m.created_at, m.id))
    return MessagePage(items=[MessageOut.build(m) for m in page], next_cursor=next_cursor)


async def conversation_events(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
    *,
    cursor: str | None,
    limit: int,
) -> EventPage:
    """The trail of a conversation, oldest first."""
    await repository.get(session, workspace_id, conversation_id)
    query = scoped(Event, workspace_id).where(Event.conversation_id == conversation_id)
    if cursor is not None:
        try:
            after = int(cursor)
        except ValueError:
            after = 0
        query = query.where(Event.id > after)
    rows = list((await session.scalars(query.order_by(Event.id).limit(limit + 1))).all())
    page = rows[:limit]
    return EventPage(
        items=[EventOut(**_public(e)) for e in page],
        next_cursor=str(page[-1].id) if page and len(rows) > limit else None,
    )


def _public(event: Event) -> dict[str, object]:
    data = events.to_dict(event)
    data.pop("workspace_id")
    return data
