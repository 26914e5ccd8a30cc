from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import now_column, workspace_fk


class ChannelConsent(Base):
    """A contact's choice about one channel: ``opted_out`` blocks every send but the reply
    that confirms it."""

    __tablename__ = "channel_consents"

    contact_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    channel_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[uuid.UUID] = workspace_fk()
    status: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = now_column()
