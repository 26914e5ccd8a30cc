"""Company, deal and contact-profile routes."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query
from starlette import status as http_status

from hilo import pagination
from hilo.contacts import service as contacts
from hilo.contacts.schemas import ContactOut
from hilo.crm import service
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
from hilo.deps import CurrentPrincipal, Session
from hilo.models import Company
from hilo.scoping import get_scoped

router = APIRouter(prefix="/api/v1", tags=["crm"])


@router.patch("/contacts/{contact_id}")
async def update_contact(
    contact_id: uuid.UUID, body: ContactPatch, principal: CurrentPrincipal, session: Session
) -> ContactOut:
    """Edit a contact's name, company, attributes, language or time zone."""
    contact = await service.do_update_contact(
        session,
        workspace_id=principal.workspace_id,
        contact_id=contact_id,
        body=body,
        actor=principal.actor,
    )
    return await contacts.get_view(session, principal.workspace_id, contact.id)


@router.post("/companies", status_code=http_status.HTTP_201_CREATED)
async def create_company(
    body: CompanyIn, principal: CurrentPrincipal, session: Session
) -> CompanyOut:
    """Add a company."""
    company = await service.do_create_company(
        session, workspace_id=principal.workspace_id, body=body, actor=principal.actor
    )
    return CompanyOut.model_validate(company)


@router.get("/companies")
async def list_companies(
    principal: CurrentPrincipal,
    session: Session,
    cursor: str | None = None,
    limit: int = Query(default=50, ge=1, le=pagination.MAX_LIMIT),
) -> CompanyPage:
    """Companies, newest first."""
    return await service.list_companies(session, principal.workspace_id, cursor=cursor, limit=limit)


@router.get("/companies/{company_id}")
async def get_company(
    company_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> CompanyOut:
    """One company."""
    company = await get_scoped(session, Company, company_id, principal.workspace_id)
    return CompanyOut.model_validate(company)


@router.post("/deals", status_code=http_status.HTTP_201_CREATED)
async def create_deal(body: DealIn, principal: CurrentPrincipal, session: Session) -> DealOut:
    """Add a deal to a contact or company."""
    deal = await service.do_create_deal(
        session, workspace_id=principal.workspace_id, body=body, actor=principal.actor
    )
    return DealOut.model_validate(deal)


@router.get("/deals")
async def list_deals(
    principal: CurrentPrincipal,
    session: Session,
    contact_id: uuid.UUID | None = None,
    company_id: uuid.UUID | None = None,
    cursor: str | None = None,
    limit: int = Query(default=50, ge=1, le=pagination.MAX_LIMIT),
) -> DealPage:
    """Deals, newest first; of one contact or company when asked."""
    return await service.list_deals(
        session,
        principal.workspace_id,
        contact_id=contact_id,
        company_id=company_id,
        cursor=cursor,
        limit=limit,
    )


@router.patch("/deals/{deal_id}")
async def update_deal(
    deal_id: uuid.UUID, body: DealPatch, principal: CurrentPrincipal, session: Session
) -> DealOut:
    """Change a deal's stage, title or amount."""
    deal = await service.do_update_deal(
        session,
        workspace_id=principal.workspace_id,
        deal_id=deal_id,
        body=body,
        actor=principal.actor,
    )
    return DealOut.model_validate(deal)
