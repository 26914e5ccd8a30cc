"""The one event log: every change becomes an event row in the transaction that made it.

The audit trail, the live stream, metrics and alerts all read from these rows. Event names
and fields are catalogued in ``docs/events.md``; keep the two in step.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hilo.clock import now
from hilo.db import after_commit
from hilo.models import Event, Message


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: a user, an API token, the customer, the bot or the system."""

    type: str
    id: str | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls("system")

    @classmethod
    def contact(cls, contact_id: uuid.UUID) -> Actor:
        return cls("contact", str(contact_id))


SYSTEM = Actor.system()

# Set by the application at start-up: receives committed events for live fan-out.
_listeners: list[Any] = []


def add_listener(callback: Any) -> None:
    """Register ``callback(events)``, called after each commit that recorded events."""
    _listeners.append(callback)


def remove_listener(callback: Any) -> None:
    """Undo :func:`add_listener`."""
    if callback in _listeners:
        _listeners.remove(callback)


def _publish(events: list[Event]) -> None:
    for callback in list(_listeners):
        callback(events)


def record(
    session: AsyncSession,
    type: str,
    *,
    workspace_id: uuid.UUID,
    actor: Actor,
    channel_id: uuid.UUID | None = None,
    conversation_id: uuid.UUID | None = None,
    contact_id: uuid.UUID | None = None,
    message_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    """Append an event to the log in the session's transaction."""
    event = Event(
        workspace_id=workspace_id,
        type=type,
        actor_type=actor.type,
        actor_id=actor.id,
        channel_id=channel_id,
        conversation_id=conversation_id,
        contact_id=contact_id,
        message_id=message_id,
        data=data or {},
        created_at=now(),
    )
    session.add(event)
    pending: list[Event] = session.sync_session.info.setdefault("pending_events", [])
    if not pending:
        after_commit(session, lambda: _publish(session.sync_session.info.pop("pending_events", [])))
    pending.append(event)
    return event


def record_on_message(
    session: AsyncSession,
    type: str,
    message: Message,
    *,
    actor: Actor = SYSTEM,
    data: dict[str, Any] | None = None,
) -> Event:
    """Append an event about ``message``, with its channel, conversation and contact."""
    return record(
        session,
        type,
        workspace_id=message.workspace_id,
        actor=actor,
        channel_id=message.channel_id,
        conversation_id=message.conversation_id,
        contact_id=message.contact_id,
        message_id=message.id,
        data=data,
    )


def to_dict(event: Event) -> dict[str, Any]:
    """The public form of an event (API, live stream)."""
    return {
        "id": event.id,
        "type": event.type,
        "workspace_id": str(event.workspace_id),
        "actor": {"type": event.actor_type, "id": event.actor_id},
        "channel_id": _s(event.channel_id),
        "conversation_id": _s(event.conversation_id),
        "contact_id": _s(event.contact_id),
        "message_id": _s(event.message_id),
        "data": event.data,
        "created_at": event.created_at.isoformat(),
        "seq": event.seq,
    }


def _s(value: uuid.UUID | None) -> str | None:
    return str(value) if value else None
