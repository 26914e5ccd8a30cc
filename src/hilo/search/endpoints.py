"""Search routes."""

from __future__ import annotations

from fastapi import APIRouter, Query

from hilo import pagination
from hilo.conversations.schemas import MessagePage
from hilo.deps import CurrentPrincipal, Session
from hilo.search import service

router = APIRouter(prefix="/api/v1/search", tags=["search"])


@router.get("/messages")
async def search_messages(
    principal: CurrentPrincipal,
    session: Session,
    q: str = Query(min_length=1, max_length=200),
    cursor: str | None = None,
    limit: int = Query(default=25, ge=1, le=pagination.MAX_LIMIT),
) -> MessagePage:
    """Messages of every conversation whose text holds every word of ``q``, newest first."""
    return await service.search_messages(
        session, principal.workspace_id, q=q, cursor=cursor, limit=limit
    )
