"""Contact API shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from hilo.models import Contact, ContactIdentity


class IdentityOut(BaseModel):
    kind: str
    value: str
    verified: bool
    channel_id: str | None


class ContactOut(BaseModel):
    id: uuid.UUID
    name: str
    company_id: uuid.UUID | None
    attributes: dict[str, Any]
    identities: list[IdentityOut]
    created_at: datetime
    last_activity_at: datetime | None

    @classmethod
    def build(cls, contact: Contact, identities: list[ContactIdentity]) -> ContactOut:
        return cls(
            id=contact.id,
            name=contact.name,
            company_id=contact.company_id,
            attributes=contact.attributes,
            identities=[
                IdentityOut(
                    kind=i.kind, value=i.value, verified=i.verified, channel_id=i.scope or None
                )
                for i in identities
                if i.contact_id == contact.id
            ],
            created_at=contact.created_at,
            last_activity_at=contact.last_activity_at,
        )


class ContactPage(BaseModel):
    items: list[ContactOut]
    next_cursor: str | None


class MergeIn(BaseModel):
    contact_id: uuid.UUID
