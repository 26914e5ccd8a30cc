"""Queries on companies and deals, scoped to a workspace."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from hilo.models import Company, Deal
from hilo.scoping import scoped


async def companies_page(
    session: AsyncSession, workspace_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
) -> list[Company]:
    """Companies, newest first."""
    query = scoped(Company, workspace_id)
    if after is not None:
        query = query.where(Company.id < after)
    return list((await session.scalars(query.order_by(Company.id.desc()).limit(limit))).all())


async def deals_page(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    contact_id: uuid.UUID | None,
    company_id: uuid.UUID | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[Deal]:
    """Deals, newest first, of a contact or company when asked."""
    query = scoped(Deal, workspace_id)
    if contact_id is not None:
        query = query.where(Deal.contact_id == contact_id)
    if company_id is not None:
        query = query.where(Deal.company_id == company_id)
    if after is not None:
        query = query.where(Deal.id < after)
    return list((await session.scalars(query.order_by(Deal.id.desc()).limit(limit))).all())
