"""Conversation routes: the inbox, the thread, replies, ownership and the trail."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query
from starlette import status as http_status

from hilo import pagination
from hilo.conversations import service, views
from hilo.conversations.schemas import (
    ConversationOut,
    ConversationPage,
    ConversationPatch,
    EventPage,
    LabelIn,
    MessageIn,
    MessageOut,
    MessagePage,
)
from hilo.deps import CurrentPrincipal, Session

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])


@router.get("")
async def list_conversations(
    principal: CurrentPrincipal,
    session: Session,
    status: str | None = None,
    channel_id: uuid.UUID | None = None,
    assignee_id: uuid.UUID | None = None,
    unassigned: bool = False,
    team_id: uuid.UUID | None = None,
    label: str | None = None,
    contact_id: uuid.UUID | None = None,
    cursor: str | None = None,
    limit: int = Query(default=25, ge=1, le=pagination.MAX_LIMIT),
) -> ConversationPage:
    """The inbox: newest activity first, filtered."""
    return await views.inbox(
        session,
        principal.workspace_id,
        status=status,
        channel_id=channel_id,
        assignee_id=assignee_id,
        unassigned=unassigned,
        team_id=team_id,
        label=label,
        contact_id=contact_id,
        cursor=cursor,
        limit=limit,
    )


@router.get("/{conversation_id}")
async def get_conversation(
    conversation_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> ConversationOut:
    """One conversation."""
    return await views.conversation(session, principal.workspace_id, conversation_id)


@router.patch("/{conversation_id}")
async def update_conversation(
    conversation_id: uuid.UUID,
    body: ConversationPatch,
    principal: CurrentPrincipal,
    session: Session,
) -> ConversationOut:
    """Change status, snooze, assignee, team or priority."""
    await service.do_update(
        session,
        workspace_id=principal.workspace_id,
        conversation_id=conversation_id,
        changes=service.Changes(body.model_dump(exclude_unset=True)),
        actor=principal.actor,
    )
    return await views.conversation(session, principal.workspace_id, conversation_id)


@router.post("/{conversation_id}/labels")
async def add_label(
    conversation_id: uuid.UUID, body: LabelIn, principal: CurrentPrincipal, session: Session
) -> ConversationOut:
    """Add a label."""
    await service.do_label(
        session,
        workspace_id=principal.workspace_id,
        conversation_id=conversation_id,
        label=body.label,
        add=True,
        actor=principal.actor,
    )
    return await views.conversation(session, principal.workspace_id, conversation_id)


@router.delete("/{conversation_id}/labels/{label}")
async def remove_label(
    conversation_id: uuid.UUID, label: str, principal: CurrentPrincipal, session: Session
) -> ConversationOut:
    """Remove a label."""
    await service.do_label(
        session,
        workspace_id=principal.workspace_id,
        conversation_id=conversation_id,
        label=label,
        add=False,
        actor=principal.actor,
    )
    return await views.conversation(session, principal.workspace_id, conversation_id)


@router.get("/{conversation_id}/messages")
async def list_messages(
    conversation_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: Session,
    cursor: str | None = None,
    limit: int = Query(default=100, ge=1, le=pagination.MAX_LIMIT),
    newest_first: bool = False,
) -> MessagePage:
    """The conversation's messages, oldest first (``newest_first``: the latest page first)."""
    conversation = await views.conversation(session, principal.workspace_id, conversation_id)
    return await views.messages(
        session,
        principal.workspace_id,
        conversation_id=conversation.id,
        cursor=cursor,
        limit=limit,
        newest_first=newest_first,
    )


@router.post("/{conversation_id}/messages", status_code=http_status.HTTP_202_ACCEPTED)
async def create_message(
    conversation_id: uuid.UUID, body: MessageIn, principal: CurrentPrincipal, session: Session
) -> MessageOut:
    """Reply (queued for delivery, by default on the customer's last channel) or add a note."""
    message = await service.do_create_message(
        session,
        workspace_id=principal.workspace_id,
        conversation_id=conversation_id,
        text=body.text,
        channel_id=body.channel_id,
        private=body.private,
        actor=principal.actor,
        sender_id=principal.user_id,
        template=(
            service.TemplateChoice(body.template.name, body.template.language, body.template.params)
            if body.template
            else None
        ),
        attachment_ids=body.attachment_ids,
    )
    return MessageOut.build(message)


@router.get("/{conversation_id}/events")
async def list_events(
    conversation_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: Session,
    cursor: str | None = None,
    limit: int = Query(default=100, ge=1, le=pagination.MAX_LIMIT),
) -> EventPage:
    """The conversation's trail: every change, who made it and when."""
    return await views.conversation_events(
        session, principal.workspace_id, conversation_id, cursor=cursor, limit=limit
    )
