"""Opaque cursors for ``{"items": [...], "next_cursor": ...}`` lists."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from hilo.errors import InvalidPayload
from hilo.i18n import _

MAX_LIMIT = 200
T = TypeVar("T")


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


def cut(
    rows: list[T], limit: int, key: Callable[[T], tuple[Any, ...]]
) -> tuple[list[T], str | None]:
    """Split ``limit + 1`` fetched rows into the page and the cursor of the next one."""
    page = rows[:limit]
    return page, (encode(*key(page[-1])) if len(rows) > limit else None)
