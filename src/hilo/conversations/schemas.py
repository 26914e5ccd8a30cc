"""Conversation and message API shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from hilo.models import Conversation, Message


class MessageOut(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    channel_id: uuid.UUID | None
    kind: str
    private: bool
    sender_type: str
    sender_id: uuid.UUID | None
    provider_message_id: str | None
    status: str
    error: str | None
    text: str
    attachments: list[dict[str, Any]]
    data: dict[str, Any]
    sent_at: datetime | None
    created_at: datetime

    @classmethod
    def build(cls, m: Message) -> MessageOut:
        return cls(
            id=m.id,
            conversation_id=m.conversation_id,
            contact_id=m.contact_id,
            channel_id=m.channel_id,
            kind=m.kind,
            private=m.kind == "note",
            sender_type=m.sender_type,
            sender_id=m.sender_id,
            provider_message_id=m.provider_message_id,
            status=m.status,
            error=m.error,
            text=m.text,
            attachments=m.attachments,
            data=m.data or {},
            sent_at=m.sent_at,
            created_at=m.created_at,
        )


class MessagePage(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None


class ConversationOut(BaseModel):
    id: uuid.UUID
    contact_id: uuid.UUID
    status: str
    priority: str
    assignee_id: uuid.UUID | None
    team_id: uuid.UUID | None
    snoozed_until: datetime | None
    last_channel_id: uuid.UUID | None
    labels: list[str]
    created_at: datetime
    last_activity_at: datetime
    resolved_at: datetime | None

    @classmethod
    def build(cls, c: Conversation, labels: list[str]) -> ConversationOut:
        return cls(
            id=c.id,
            contact_id=c.contact_id,
            status=c.status,
            priority=c.priority,
            assignee_id=c.assignee_id,
            team_id=c.team_id,
            snoozed_until=c.snoozed_until,
            last_channel_id=c.last_channel_id,
            labels=labels,
            created_at=c.created_at,
            last_activity_at=c.last_activity_at,
            resolved_at=c.resolved_at,
        )


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    next_cursor: str | None


class ConversationPatch(BaseModel):
    status: Literal["open", "pending", "snoozed", "resolved"] | None = None
    snoozed_until: AwareDatetime | None = None
    assignee_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    priority: Literal["low", "normal", "high", "urgent"] | None = None


class TemplateIn(BaseModel):
    """A channel's template (``GET /api/v1/channels/{id}/templates``) and its values."""

    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=1, max_length=16)
    params: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=list, max_length=32
    )


class MessageIn(BaseModel):
    # Required unless a template or files are sent.
    text: str = Field(default="", max_length=65536)
    channel_id: uuid.UUID | None = None
    private: bool = False
    template: TemplateIn | None = None
    # Files uploaded with ``POST /api/v1/attachments``.
    attachment_ids: list[uuid.UUID] = Field(default_factory=list, max_length=10)


class LabelIn(BaseModel):
    label: str = Field(min_length=1, max_length=64)


class EventOut(BaseModel):
    id: int
    type: str
    actor: dict[str, str | None]
    channel_id: str | None
    conversation_id: str | None
    contact_id: str | None
    message_id: str | None
    data: dict[str, Any]
    created_at: str
    seq: int | None


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None
