"""Opaque cursors for ``{"items": [...], "next_cursor": ...}`` lists."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from hilo.errors import InvalidPayload
from hilo.i18n import _

MAX_LIMIT = 200


def encode(*parts: Any) -> str:
    """A cursor from a sort key (datetimes and UUIDs become strings)."""
    values = [p.isoformat() if isinstance(p, datetime) else str(p) for p in parts]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode(cursor: str) -> list[str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded))
        if not isinstance(values, list):
            raise ValueError
        return [str(v) for v in values]
    except (ValueError, TypeError) as exc:
        raise InvalidPayload(_("The cursor is not valid."), code="invalid_cursor") from exc


def decode_id(cursor: str | None) -> uuid.UUID | None:
    """The id a one-part cursor points after."""
    if cursor is None:
        return None
    try:
        return uuid.UUID(_decode(cursor)[0])
    except (ValueError, IndexError) as exc:
        raise InvalidPayload(_("The cursor is not valid."), code="invalid_cursor") from exc


def decode_time_id(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The (time, id) a two-part cursor points after."""
    if cursor is None:
        return None
    try:
        when, ident = _decode(cursor)
        return datetime.fromisoformat(when), uuid.UUID(ident)
    except ValueError as exc:
        raise InvalidPayload(_("The cursor is not valid."), code="invalid_cursor") from exc
