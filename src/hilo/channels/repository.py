"""Queries on channels and inbound events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from hilo.models import Channel, ContactIdentity, InboundEvent, Message
from hilo.scoping import get_scoped, scoped


async def get(session: AsyncSession, workspace_id: uuid.UUID, channel_id: uuid.UUID) -> Channel:
    """A channel of the workspace, or NotFound."""
    return await get_scoped(session, Channel, channel_id, workspace_id)


async def get_for_webhook(session: AsyncSession, channel_id: uuid.UUID) -> Channel | None:
    """The channel a webhook names; webhooks carry no workspace, the channel id decides it."""
    return await session.get(Channel, channel_id)


async def list_all(session: AsyncSession, workspace_id: uuid.UUID) -> list[Channel]:
    """The workspace's channels, oldest first."""
    query = scoped(Channel, workspace_id).order_by(Channel.created_at, Channel.id)
    return list((await session.scalars(query)).all())


async def list_of_type(
    session: AsyncSession, workspace_id: uuid.UUID, channel_type: str
) -> list[Channel]:
    """The workspace's active channels of one type."""
    query = scoped(Channel, workspace_id).where(Channel.type == channel_type, Channel.active)
    return list((await session.scalars(query.order_by(Channel.created_at))).all())


async def last_inbound_at(
    session: AsyncSession, workspace_id: uuid.UUID, *, contact_id: uuid.UUID, channel_id: uuid.UUID
) -> datetime | None:
    """When the contact last wrote on the channel: the provider's time where it gave one."""
    moment = func.coalesce(Message.sent_at, Message.created_at)
    query = (
        scoped(Message, workspace_id)
        .where(
            Message.contact_id == contact_id,
            Message.channel_id == channel_id,
            Message.kind == "inbound",
        )
        .order_by(moment.desc())
        .limit(1)
        .with_only_columns(moment)
    )
    value: datetime | None = (await session.scalars(query)).first()
    return value


async def insert_inbound_many(session: AsyncSession, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
    """Store inbound events in one statement, but none whose (channel, provider id) exists
    (or comes earlier in ``rows``); the ids of those stored."""
    dialect = session.bind.dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(InboundEvent)
        .on_conflict_do_nothing(index_elements=["channel_id", "provider_event_id"])
        .returning(InboundEvent.id)
    )
    # A list of parameters: SQLAlchemy sends them as multi-row VALUES, compiled once.
    return set((await session.scalars(statement, rows)).all())


async def message_ids_of(
    session: AsyncSession, keys: list[tuple[uuid.UUID, str]]
) -> dict[tuple[uuid.UUID, str], uuid.UUID]:
    """The message ids given to the stored inbound events of these (channel, provider id)."""
    query = select(
        InboundEvent.channel_id, InboundEvent.provider_event_id, InboundEvent.message_id
    ).where(
        or_(
            *(
                and_(InboundEvent.channel_id == channel_id, InboundEvent.provider_event_id == pid)
                for channel_id, pid in set(keys)
            )
        )
    )
    return {(c, p): m for c, p, m in await session.execute(query)}


async def recipient_identity(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    contact_id: uuid.UUID,
    kind: str,
    scope: str,
) -> ContactIdentity | None:
    """The contact's identity a channel addresses them by, most recent first."""
    query = (
        scoped(ContactIdentity, workspace_id)
        .where(
            ContactIdentity.contact_id == contact_id,
            ContactIdentity.kind == kind,
            ContactIdentity.scope == scope,
        )
        .order_by(ContactIdentity.created_at.desc())
        .limit(1)
    )
    return (await session.scalars(query)).first()
