"""Queries of the web chat's public side; each starts from the channel's workspace."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession

from hilo.models import Message, WebchatVisitor
from hilo.scoping import scoped

# What a visitor sees: their own messages, and replies once they are sent.
VISIBLE_REPLY = ("sent", "delivered", "read")


async def get_visitor(
    session: AsyncSession, workspace_id: uuid.UUID, channel_id: uuid.UUID, visitor_id: uuid.UUID
) -> WebchatVisitor | None:
    """The visitor of that channel, or None."""
    query = scoped(WebchatVisitor, workspace_id).where(
        WebchatVisitor.id == visitor_id, WebchatVisitor.channel_id == channel_id
    )
    return (await session.scalars(query)).first()


def _visible(
    workspace_id: uuid.UUID, channel_id: uuid.UUID, contact_id: uuid.UUID
) -> Select[tuple[Message]]:
    return scoped(Message, workspace_id).where(
        Message.contact_id == contact_id,
        Message.channel_id == channel_id,
        or_(
            Message.kind == "inbound",
            and_(Message.kind.in_(("outbound", "bot")), Message.status.in_(VISIBLE_REPLY)),
        ),
    )


async def visible_messages(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    channel_id: uuid.UUID,
    contact_id: uuid.UUID,
    limit: int,
) -> list[Message]:
    """The latest ``limit`` messages the visitor may see on this channel, oldest first."""
    query = (
        _visible(workspace_id, channel_id, contact_id)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(limit)
    )
    rows = list((await session.scalars(query)).all())
    rows.reverse()
    return rows


async def visible_message(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    channel_id: uuid.UUID,
    contact_id: uuid.UUID,
    message_id: uuid.UUID,
) -> Message | None:
    """One message, if the visitor may see it."""
    query = _visible(workspace_id, channel_id, contact_id).where(Message.id == message_id)
    return (await session.scalars(query)).first()


async def replies_to(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    channel_id: uuid.UUID,
    contact_id: uuid.UUID,
    message_ids: Sequence[uuid.UUID],
) -> list[Message]:
    """Those of ``message_ids`` that are replies to this contact on this channel."""
    query = scoped(Message, workspace_id).where(
        Message.id.in_(list(message_ids)),
        Message.contact_id == contact_id,
        Message.channel_id == channel_id,
        Message.kind.in_(("outbound", "bot")),
    )
    return list((await session.scalars(query)).all())
