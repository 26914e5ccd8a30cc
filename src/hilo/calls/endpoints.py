"""Call routes: an agent logs a call in the conversation."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from starlette import status as http_status

from hilo.calls import service
from hilo.calls.schemas import CallIn
from hilo.conversations.schemas import MessageOut
from hilo.deps import CurrentPrincipal, Session

router = APIRouter(prefix="/api/v1/conversations", tags=["calls"])


@router.post("/{conversation_id}/calls", status_code=http_status.HTTP_201_CREATED)
async def log_call(
    conversation_id: uuid.UUID, body: CallIn, principal: CurrentPrincipal, session: Session
) -> MessageOut:
    """Log a call with the customer: it joins the thread and the trail; nothing is sent."""
    message = await service.do_log_call(
        session,
        workspace_id=principal.workspace_id,
        conversation_id=conversation_id,
        call=body,
        actor=principal.actor,
        sender_id=principal.user_id,
    )
    return MessageOut.build(message)
