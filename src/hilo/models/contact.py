from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import JSONType, UTCDateTime, now_column, uuid_pk, workspace_fk


class Contact(Base):
    """One customer, whatever channels they write on."""

    __tablename__ = "contacts"
    __table_args__ = (Index("ix_contacts_workspace_name", "workspace_id", "name"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    workspace_id: Mapped[uuid.UUID] = workspace_fk()
    name: Mapped[str] = mapped_column(String(200), default="")
    company_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("companies.id", ondelete="SET NULL"), default=None
    )
    locale: Mapped[str | None] = mapped_column(String(10), default=None)
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Set when this contact was absorbed by a merge; reads follow it to the survivor.
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("contacts.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = now_column()
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
