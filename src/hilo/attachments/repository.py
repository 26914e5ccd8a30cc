"""Queries on attachments; every one is scoped to a workspace."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from hilo.errors import NotFound
from hilo.models import Attachment
from hilo.scoping import get_scoped, scoped


async def get(
    session: AsyncSession, workspace_id: uuid.UUID, attachment_id: uuid.UUID
) -> Attachment:
    """An attachment of the workspace (without its content), or NotFound."""
    return await get_scoped(session, Attachment, attachment_id, workspace_id)


async def get_with_content(
    session: AsyncSession, workspace_id: uuid.UUID, attachment_id: uuid.UUID
) -> Attachment:
    """An attachment of the workspace with its bytes loaded, or NotFound."""
    query = (
        scoped(Attachment, workspace_id)
        .where(Attachment.id == attachment_id)
        .options(undefer(Attachment.content))
    )
    row = (await session.scalars(query)).first()
    if row is None:
        raise NotFound()
    return row


async def get_upload_with_content(
    session: AsyncSession, attachment_id: uuid.UUID
) -> Attachment | None:
    """An agent's upload (never a customer's media) with its bytes, for a signed link."""
    query = (
        select(Attachment)
        .where(Attachment.id == attachment_id, Attachment.message_id.is_(None))
        .options(undefer(Attachment.content))
    )
    return (await session.scalars(query)).first()


async def list_by_ids(
    session: AsyncSession, workspace_id: uuid.UUID, ids: list[uuid.UUID]
) -> list[Attachment]:
    """The workspace's attachments with those ids, in the order asked; NotFound if any is not."""
    if not ids:
        return []
    query = scoped(Attachment, workspace_id).where(Attachment.id.in_(ids))
    found = {row.id: row for row in (await session.scalars(query)).all()}
    if any(i not in found for i in ids):
        raise NotFound()
    return [found[i] for i in ids]
