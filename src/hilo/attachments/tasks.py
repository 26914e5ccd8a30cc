"""The ``media.fetch`` job: a customer's files downloaded right after their message lands.

Providers' media links expire (Meta's within minutes), so the files are fetched at ingest,
by a durable job rather than in the webhook request: the message shows at once with its
attachments ``pending``, and each becomes ``stored`` (with its ``attachment_id``),
``oversize`` (past ``HILO_MEDIA_MAX_BYTES``; the message is kept, the file is not) or
``unavailable`` (the provider no longer has it, or kept failing). The HTTP calls run outside
any transaction.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events, http
from hilo.attachments import service
from hilo.channels import service as channels
from hilo.channels.base import FetchesMedia, MediaError
from hilo.channels.registry import get_adapter
from hilo.clock import now
from hilo.events import Actor
from hilo.jobs.registry import RetryLater, job
from hilo.jobs.service import enqueue
from hilo.jobs.worker import JobContext
from hilo.models import Channel, Message
from hilo.settings import get_settings

log = logging.getLogger(__name__)

# Tries before a file the provider keeps failing to give is marked unavailable.
MEDIA_ATTEMPTS = 10


def enqueue_if_pending(session: AsyncSession, message: Message) -> None:
    """Queue the download of ``message``'s pending files, if it has any."""
    if any(a.get("status") == "pending" for a in message.attachments):
        enqueue(
            session,
            "media.fetch",
            {"message_id": str(message.id)},
            workspace_id=message.workspace_id,
        )


@job("media.fetch")
async def fetch_media(ctx: JobContext) -> None:
    """Download a message's pending files and keep them in its workspace."""
    message_id = uuid.UUID(ctx.payload["message_id"])
    async with ctx.db.transaction() as session:
        message = await session.get(Message, message_id)
        channel = await session.get(Channel, message.channel_id) if message else None
        if message is None or channel is None:
            await ctx.finish(session)
            return
        context = channels.context(channel)
        pending = [(i, dict(a)) for i, a in enumerate(message.attachments) if _pending(a)]
    adapter = get_adapter(channel.type)
    outcomes: dict[int, service.Download | MediaError] = {}
    again = False
    if isinstance(adapter, FetchesMedia):
        limit = get_settings().media_max_bytes
        for index, attachment in pending:
            try:
                location = await adapter.media_location(http.client(), context, attachment)
                if location is None:
                    outcomes[index] = MediaError("no way to fetch it", retryable=False)
                    continue
                outcomes[index] = await service.download(http.client(), location, limit=limit)
            except MediaError as exc:
                if exc.retryable and ctx.job.attempts < MEDIA_ATTEMPTS:
                    again = True
                else:
                    outcomes[index] = exc
                log.warning("media of message %s not fetched: %s", message_id, exc)
    else:
        refused = MediaError("the channel cannot fetch files", retryable=False)
        outcomes = {index: refused for index, _attachment in pending}
    async with ctx.db.transaction() as session:
        row = await session.get_one(Message, message_id, with_for_update=not ctx.db.is_sqlite)
        _apply(session, row, outcomes)
        if not again:
            await ctx.finish(session)
    if again:
        raise RetryLater("the provider could not give every file yet")


def _pending(attachment: dict[str, Any]) -> bool:
    return attachment.get("status") == "pending"


def _apply(session: AsyncSession, message: Message, outcomes: dict[int, Any]) -> None:
    attachments = [dict(a) for a in message.attachments]
    changed: list[str] = []
    for index, outcome in outcomes.items():
        if index >= len(attachments) or not _pending(attachments[index]):
            continue  # another run got there first
        attachment = attachments[index]
        if isinstance(outcome, MediaError):
            attachment.update(status="unavailable", error=str(outcome)[:300])
        elif outcome.content is None:
            attachment["status"] = "oversize"
            if outcome.size is not None:
                attachment["size"] = outcome.size
        else:
            if outcome.mime_type and not attachment.get("mime_type"):
                attachment["mime_type"] = outcome.mime_type
            attachment = attachments[index] = service.do_keep(
                session, message, attachment, outcome.content
            )
        changed.append(attachment["status"])
    if not changed:
        return
    message.attachments = attachments
    message.updated_at = now()
    events.record(
        session,
        "message.media_stored",
        workspace_id=message.workspace_id,
        actor=Actor.system(),
        channel_id=message.channel_id,
        conversation_id=message.conversation_id,
        contact_id=message.contact_id,
        message_id=message.id,
        data={"statuses": changed},
    )
