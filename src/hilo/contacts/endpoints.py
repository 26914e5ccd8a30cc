"""Contact routes."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query

from hilo import pagination
from hilo.contacts import repository, service
from hilo.contacts.schemas import ContactOut, ContactPage, MergeIn
from hilo.conversations import views as conversation_views
from hilo.conversations.schemas import MessagePage
from hilo.deps import CurrentPrincipal, Session

router = APIRouter(prefix="/api/v1/contacts", tags=["contacts"])


@router.get("")
async def list_contacts(
    principal: CurrentPrincipal,
    session: Session,
    phone: str | None = None,
    email: str | None = None,
    q: str | None = Query(default=None, max_length=200),
    cursor: str | None = None,
    limit: int = Query(default=50, ge=1, le=pagination.MAX_LIMIT),
) -> ContactPage:
    """Contacts newest first; filter by phone, e-mail or free text."""
    return await service.list_page(
        session, principal.workspace_id, phone=phone, email=email, q=q, cursor=cursor, limit=limit
    )


@router.get("/{contact_id}")
async def get_contact(
    contact_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> ContactOut:
    """One contact with every identity; a merged-away id answers with the survivor."""
    return await service.get_view(session, principal.workspace_id, contact_id)


@router.get("/{contact_id}/timeline")
async def get_timeline(
    contact_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: Session,
    cursor: str | None = None,
    limit: int = Query(default=100, ge=1, le=pagination.MAX_LIMIT),
    newest_first: bool = False,
) -> MessagePage:
    """Every message of every conversation of the contact, across channels, in order
    (``newest_first``: the latest page first, then older ones)."""
    contact = await repository.get(session, principal.workspace_id, contact_id)
    return await conversation_views.messages(
        session,
        principal.workspace_id,
        contact_id=contact.id,
        cursor=cursor,
        limit=limit,
        newest_first=newest_first,
    )


@router.post("/{contact_id}/merge")
async def merge_contact(
    contact_id: uuid.UUID, body: MergeIn, principal: CurrentPrincipal, session: Session
) -> ContactOut:
    """Fold another contact into this one; nothing is lost."""
    survivor = await service.do_merge(
        session,
        workspace_id=principal.workspace_id,
        survivor_id=contact_id,
        absorbed_id=body.contact_id,
        actor=principal.actor,
    )
    return await service.get_view(session, principal.workspace_id, survivor.id)
