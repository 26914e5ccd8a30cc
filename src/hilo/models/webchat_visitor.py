from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import UTCDateTime, now_column, uuid_pk, workspace_fk


class WebchatVisitor(Base):
    """A browser talking through a web chat widget, known by its visitor token.

    ``user_id`` is the company's own id for a signed-in customer, set only when the site
    vouched for it with the channel's identity HMAC; a visitor without it is anonymous.
    ``email`` / ``phone`` are what the visitor typed (unverified) or what the site signed.
    """

    __tablename__ = "webchat_visitors"

    id: Mapped[uuid.UUID] = uuid_pk()
    workspace_id: Mapped[uuid.UUID] = workspace_fk()
    channel_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str | None] = mapped_column(String(255), default=None)
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    email_verified: Mapped[bool] = mapped_column(default=False)
    phone: Mapped[str | None] = mapped_column(String(64), default=None)
    phone_verified: Mapped[bool] = mapped_column(default=False)
    locale: Mapped[str] = mapped_column(String(8), default="")
    created_at: Mapped[datetime] = now_column()
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
