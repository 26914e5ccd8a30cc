from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import now_column, uuid_pk


class Workspace(Base):
    """A tenant: one company's (or one client's) whole support operation."""

    __tablename__ = "workspaces"

    id: Mapped[uuid.UUID] = uuid_pk()
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    default_region: Mapped[str] = mapped_column(String(2), default="ES")
    default_locale: Mapped[str] = mapped_column(String(10), default="es")
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Madrid")
    reopen_window_days: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = now_column()
