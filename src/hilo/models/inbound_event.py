from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import JSONType, UTCDateTime, now_column, uuid_pk, workspace_fk


class InboundEvent(Base):
    """A provider's delivery exactly as it arrived, stored once per provider event id.

    Written before the webhook is acknowledged; processed afterwards by the
    ``inbound.process`` job. ``message_id`` is allocated here so the acknowledgement can name
    the message before it exists, and a redelivery names the same one.
    """

    __tablename__ = "inbound_events"
    __table_args__ = (UniqueConstraint("channel_id", "provider_event_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    workspace_id: Mapped[uuid.UUID] = workspace_fk()
    channel_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("channels.id", ondelete="CASCADE")
    )
    provider_event_id: Mapped[str] = mapped_column(String(255))
    message_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    raw_body: Mapped[bytes] = mapped_column(LargeBinary)
    item: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    received_at: Mapped[datetime] = now_column()
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
