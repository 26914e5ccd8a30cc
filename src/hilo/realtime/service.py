"""Stream tickets and the event stream itself: replay from the database, then live."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from sqlalchemy import select

from hilo.auth.service import Principal
from hilo.clock import now
from hilo.crypto import constant_time_equal, internal_hmac
from hilo.db import Database
from hilo.errors import InvalidPayload, Unauthorized
from hilo.i18n import _
from hilo.models import Event
from hilo.realtime.broker import StreamEvent, Subscription

TICKET_PURPOSE = "stream-ticket"
TICKET_VERSION = "v1"
TICKET_TTL = timedelta(seconds=60)
REPLAY_BATCH = 500


def issue_ticket(
    principal: Principal, *, issued_at: datetime | None = None, ttl: timedelta = TICKET_TTL
) -> tuple[str, datetime]:
    """A signed, stateless ticket for ``principal`` and when it expires."""
    expires_at = (issued_at or now()) + ttl
    claims = {
        "w": str(principal.workspace_id),
        "r": principal.role,
        "t": str(principal.token_id) if principal.token_id else None,
        "u": str(principal.user_id) if principal.user_id else None,
        "e": int(expires_at.timestamp()),
    }
    body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode())
    payload = f"{TICKET_VERSION}.{body.decode().rstrip('=')}"
    return f"{payload}.{internal_hmac(TICKET_PURPOSE, payload)}", expires_at


def verify_ticket(ticket: str | None, *, at: datetime | None = None) -> Principal:
    """The principal a ticket was issued to; Unauthorized if forged, malformed or expired."""
    refused = Unauthorized(code="invalid_ticket")
    if not ticket or ticket.count(".") != 2:
        raise refused
    payload, _sep, signature = ticket.rpartition(".")
    version, _sep, body = payload.partition(".")
    if version != TICKET_VERSION or not constant_time_equal(
        signature, internal_hmac(TICKET_PURPOSE, payload)
    ):
        raise refused
    try:
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        expires = int(claims["e"])
        principal = Principal(
            workspace_id=uuid.UUID(claims["w"]),
            role=str(claims["r"]),
            token_id=uuid.UUID(claims["t"]) if claims.get("t") else None,
            user_id=uuid.UUID(claims["u"]) if claims.get("u") else None,
        )
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise refused from exc
    if (at or now()).timestamp() >= expires:
        raise Unauthorized(code="expired_ticket")
    return principal


def parse_last_event_id(*values: str | None) -> int | None:
    """The first given resume point (header or query), or None; 422 when not a number."""
    for value in values:
        if value is None or not value.strip():
            continue
        try:
            number = int(value.strip())
        except ValueError:
            number = -1
        if number < 0:
            raise InvalidPayload(
                _("Invalid payload: check the fields {fields}."), fields="last_event_id"
            )
        return number
    return None


async def replay(
    db: Database, workspace_id: uuid.UUID, after_id: int, *, batch: int = REPLAY_BATCH
) -> AsyncIterator[StreamEvent]:
    """The stored events of a workspace with an id above ``after_id``, oldest first."""
    cursor = after_id
    while True:
        # A short read per batch: a long one would keep old WAL pages from being reused.
        async with db.read() as session:
            rows = list(
                await session.scalars(
                    select(Event)
                    .where(Event.workspace_id == workspace_id, Event.id > cursor)
                    .order_by(Event.id)
                    .limit(batch)
                )
            )
            items = [StreamEvent.from_row(row) for row in rows]
        for item in items:
            yield item
        if len(items) < batch:
            return
        cursor = items[-1].id


async def follow(
    db: Database,
    subscription: Subscription,
    workspace_id: uuid.UUID,
    last_event_id: int | None,
    *,
    idle_seconds: float | None = None,
) -> AsyncIterator[StreamEvent | None]:
    """Replay after ``last_event_id`` (if given), then live events; ``None`` when idle."""
    # The subscription is open before the replay starts, so nothing committed meanwhile is
    # missed; an event both replayed and queued live is sent once. Ends when the broker
    # closes the subscription.
    workspace = str(workspace_id)
    replayed: set[int] = set()
    if last_event_id is not None:
        async for item in replay(db, workspace_id, last_event_id):
            replayed.add(item.id)
            yield item
    while True:
        try:
            async with asyncio.timeout(idle_seconds):
                live = await subscription.get()
        except TimeoutError:
            yield None
            continue
        if live is None:
            return
        if live.workspace_id != workspace or live.id in replayed:
            continue
        yield live
