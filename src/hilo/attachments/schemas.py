"""Attachment API shapes."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

from hilo.models import Attachment


class AttachmentOut(BaseModel):
    id: uuid.UUID
    kind: str
    mime_type: str
    filename: str | None
    size: int
    sha256: str
    message_id: uuid.UUID | None
    created_at: datetime

    @classmethod
    def build(cls, row: Attachment) -> AttachmentOut:
        return cls(
            id=row.id,
            kind=row.kind,
            mime_type=row.mime_type,
            filename=row.filename,
            size=row.size,
            sha256=row.sha256,
            message_id=row.message_id,
            created_at=row.created_at,
        )
