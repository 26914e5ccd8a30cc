from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import now_column, uuid_pk, workspace_fk


class ContactIdentity(Base):
    """A way to recognise a contact: a phone, an e-mail, or a channel's own sender id.

    ``scope`` is empty for identities shared across channels (phone, e-mail) and holds the
    channel id for ids that only mean something inside one channel (an app's user id).
    ``verified`` is true only when a signed source asserted it.
    """

    __tablename__ = "contact_identities"
    __table_args__ = (UniqueConstraint("workspace_id", "kind", "scope", "value"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    workspace_id: Mapped[uuid.UUID] = workspace_fk()
    contact_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(64), default="")
    value: Mapped[str] = mapped_column(String(320))
    verified: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = now_column()
