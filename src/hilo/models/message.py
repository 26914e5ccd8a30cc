from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import JSONType, UTCDateTime, now_column, uuid_pk, workspace_fk


class Message(Base):
    """A message of a conversation.

    ``kind``: inbound (from the customer), outbound (an agent's reply), note (internal, never
    sent), bot, system. ``status``: received, queued, sending, sent, delivered, read, failed.
    """

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation", "conversation_id", "created_at"),
        Index("ix_messages_contact", "contact_id", "created_at"),
        Index("ix_messages_provider", "channel_id", "provider_message_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    workspace_id: Mapped[uuid.UUID] = workspace_fk()
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("conversations.id", ondelete="CASCADE")
    )
    contact_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("contacts.id"))
    channel_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("channels.id", ondelete="SET NULL"), default=None
    )
    kind: Mapped[str] = mapped_column(String(16))
    sender_type: Mapped[str] = mapped_column(String(16))
    sender_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    provider_message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    text: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # What the channel adds beyond text: a button's payload, the message replied to, a place.
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    inbound_event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = now_column()
    updated_at: Mapped[datetime] = now_column()
