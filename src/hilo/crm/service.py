"""CRM rules: companies, deals, and editing a contact's profile."""

from __future__ import annotations

import uuid
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events, pagination
from hilo.clock import now
from hilo.contacts import repository as contacts
from hilo.crm import repository
from hilo.crm.schemas import (
    CompanyIn,
    CompanyOut,
    CompanyPage,
    ContactPatch,
    DealIn,
    DealOut,
    DealPage,
    DealPatch,
)
from hilo.errors import InvalidPayload
from hilo.events import Actor
from hilo.i18n import _
from hilo.models import Company, Contact, Deal
from hilo.scoping import get_scoped


async def do_create_company(
    session: AsyncSession, *, workspace_id: uuid.UUID, body: CompanyIn, actor: Actor
) -> Company:
    """A new company."""
    company = Company(workspace_id=workspace_id, created_at=now(), **body.model_dump())
    session.add(company)
    await session.flush()
    events.record(
        session,
        "company.created",
        workspace_id=workspace_id,
        actor=actor,
        data={"company_id": str(company.id)},
    )
    return company


async def list_companies(
    session: AsyncSession, workspace_id: uuid.UUID, *, cursor: str | None, limit: int
) -> CompanyPage:
    """A page of companies."""
    rows = await repository.companies_page(
        session, workspace_id, after=pagination.decode_id(cursor), limit=limit + 1
    )
    page, next_cursor = pagination.cut(rows, limit, lambda c: (c.id,))
    return CompanyPage(items=[CompanyOut.model_validate(c) for c in page], next_cursor=next_cursor)


async def check_deal_links(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    contact_id: uuid.UUID | None,
    company_id: uuid.UUID | None,
) -> uuid.UUID | None:
    """The deal's contact and company belong to the workspace; returns the live contact id."""
    if company_id is not None:
        await get_scoped(session, Company, company_id, workspace_id)
    if contact_id is not None:
        return (await contacts.get(session, workspace_id, contact_id)).id
    return None


async def do_create_deal(
    session: AsyncSession, *, workspace_id: uuid.UUID, body: DealIn, actor: Actor
) -> Deal:
    """A new deal of a contact or company."""
    contact_id = await check_deal_links(session, workspace_id, body.contact_id, body.company_id)
    deal = Deal(
        workspace_id=workspace_id,
        created_at=now(),
        **{**body.model_dump(), "contact_id": contact_id},
    )
    session.add(deal)
    await session.flush()
    events.record(
        session,
        "deal.created",
        workspace_id=workspace_id,
        actor=actor,
        contact_id=contact_id,
        data={"deal_id": str(deal.id), "stage": deal.stage, "amount": str(deal.amount)},
    )
    return deal


async def do_update_deal(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    deal_id: uuid.UUID,
    body: DealPatch,
    actor: Actor,
) -> Deal:
    """Move a deal to another stage, or change its title or amount."""
    deal = await get_scoped(session, Deal, deal_id, workspace_id)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    for field, value in changes.items():
        setattr(deal, field, value)
    if changes:
        events.record(
            session,
            "deal.updated",
            workspace_id=workspace_id,
            actor=actor,
            contact_id=deal.contact_id,
            data={"deal_id": str(deal.id), **{k: str(v) for k, v in changes.items()}},
        )
    return deal


async def list_deals(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    contact_id: uuid.UUID | None,
    company_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
) -> DealPage:
    """A page of deals."""
    rows = await repository.deals_page(
        session,
        workspace_id,
        contact_id=contact_id,
        company_id=company_id,
        after=pagination.decode_id(cursor),
        limit=limit + 1,
    )
    page, next_cursor = pagination.cut(rows, limit, lambda d: (d.id,))
    return DealPage(items=[DealOut.model_validate(d) for d in page], next_cursor=next_cursor)


async def do_update_contact(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    contact_id: uuid.UUID,
    body: ContactPatch,
    actor: Actor,
) -> Contact:
    """Edit a contact's profile; the changed field names are recorded, not their values."""
    contact = await contacts.get(session, workspace_id, contact_id)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    if changes.get("company_id") is not None:
        await get_scoped(session, Company, changes["company_id"], workspace_id)
    if changes.get("timezone"):
        try:
            ZoneInfo(changes["timezone"])
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidPayload(_("Unknown time zone."), code="invalid_timezone") from exc
    for field, value in changes.items():
        setattr(contact, field, value if field != "name" else (value or ""))
    if changes:
        events.record(
            session,
            "contact.updated",
            workspace_id=workspace_id,
            actor=actor,
            contact_id=contact.id,
            data={"fields": sorted(changes)},
        )
    return contact
