"""Call rules: what the phone provider reports of a call, and calls logged by agents.

A call is a message of its conversation carrying ``data["call"]``: its ``direction``,
``status`` and ``duration`` (seconds); from the voice channel also the provider's ``sid``
and recording and transcription ids. The recording is an ``audio`` attachment, the
transcript the message text. A call an agent logs is a message of kind ``call``; nothing is
sent to the customer.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events
from hilo.calls.schemas import CallIn
from hilo.channels import service as channels
from hilo.channels.base import InboundItem
from hilo.clock import now
from hilo.conversations import repository as conversation_repository
from hilo.events import Actor
from hilo.models import Message

# A call's status only moves forward: a late "ringing" never undoes "completed". Every
# status not listed (completed, busy, no-answer, failed, canceled) ends the call.
STATUS_RANK = {"queued": 0, "initiated": 0, "ringing": 1, "in-progress": 2}
FINAL_RANK = 3
# What the trail keeps of a call's news: ids and numbers, never what was said.
TRAIL_FIELDS = (
    "status",
    "duration",
    "recording_status",
    "recording_duration",
    "transcription_status",
)


def _rank(status: str) -> int:
    return STATUS_RANK.get(status, FINAL_RANK)


async def do_apply_update(
    session: AsyncSession, message: Message, item: InboundItem, *, at: datetime
) -> None:
    """Merge a provider's news of a call into the call's message, and record it.

    A report that changes nothing (a status older than the one kept, a recording already
    attached) records nothing.
    """
    # A call's callbacks come together (status, recording, transcript) and are processed
    # at once: the row is locked so that each merges into what the others wrote.
    await session.refresh(message, with_for_update=True)
    news: dict[str, Any] = dict(item.data.get("call") or {})
    call: dict[str, Any] = dict((message.data or {}).get("call") or {})
    status = news.pop("status", None)
    if status is not None:
        current = call.get("status")
        if current is None or _rank(str(status)) > _rank(str(current)):
            call["status"] = status
        else:
            status = None
    changed = {key: value for key, value in news.items() if call.get(key) != value}
    call.update(changed)
    known = {a.get("media_id") for a in message.attachments or []}
    attachments = [a for a in item.attachments if a.get("media_id") not in known]
    transcript = item.text.strip()
    new_text = bool(transcript) and transcript not in message.text
    if status is None and not changed and not attachments and not new_text:
        return
    if attachments:
        message.attachments = [*(message.attachments or []), *attachments]
    if new_text:
        message.text = f"{message.text}\n\n{transcript}" if message.text else transcript
    message.data = {**(message.data or {}), "call": call}
    message.updated_at = max(message.updated_at, at)
    reported = {**changed, **({"status": status} if status is not None else {})}
    data: dict[str, Any] = {"update": str(item.data.get("update") or "status")}
    data.update({key: reported[key] for key in TRAIL_FIELDS if key in reported})
    if attachments:
        data["recordings"] = len(attachments)
    if new_text:
        data["transcribed"] = True
    events.record(
        session,
        "call.updated",
        workspace_id=message.workspace_id,
        actor=Actor.system(),
        channel_id=message.channel_id,
        conversation_id=message.conversation_id,
        contact_id=message.contact_id,
        message_id=message.id,
        data=data,
    )


async def do_log_call(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
    call: CallIn,
    actor: Actor,
    sender_id: uuid.UUID | None,
) -> Message:
    """An agent's call with the customer, added to the thread and the trail."""
    conversation = await conversation_repository.get(session, workspace_id, conversation_id)
    channel_id = None
    if call.channel_id is not None:
        channel_id = (await channels.get(session, workspace_id, call.channel_id)).id
    moment = now()
    details: dict[str, Any] = {
        "direction": call.direction,
        "outcome": call.outcome,
        "duration": call.duration_seconds,
        "logged": True,
    }
    if call.started_at is not None:
        details["started_at"] = call.started_at.astimezone(UTC).isoformat()
    message = Message(
        workspace_id=workspace_id,
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        channel_id=channel_id,
        kind="call",
        sender_type=actor.type,
        sender_id=sender_id,
        status="logged",
        text=call.notes.strip(),
        data={"call": details},
        created_at=moment,
        updated_at=moment,
    )
    session.add(message)
    await session.flush()
    conversation.last_activity_at = max(conversation.last_activity_at, moment)
    events.record(
        session,
        "call.logged",
        workspace_id=workspace_id,
        actor=actor,
        channel_id=channel_id,
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        message_id=message.id,
        data={
            "direction": call.direction,
            "outcome": call.outcome,
            "duration": call.duration_seconds,
        },
    )
    return message
