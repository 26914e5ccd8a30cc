from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import now_column, uuid_pk, workspace_fk


class User(Base):
    """A person who works in a workspace: admin, supervisor or agent."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("workspace_id", "email"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    workspace_id: Mapped[uuid.UUID] = workspace_fk()
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    locale: Mapped[str | None] = mapped_column(String(10), default=None)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = now_column()
