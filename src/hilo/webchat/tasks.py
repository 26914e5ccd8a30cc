"""Web chat jobs: the e-mail that proves a visitor's typed address is theirs."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from hilo import events, http
from hilo.channels.base import SendError
from hilo.channels.registry import get_adapter
from hilo.events import Actor
from hilo.jobs.registry import RetryLater, job
from hilo.jobs.worker import JobContext
from hilo.webchat import service

log = logging.getLogger(__name__)

# How long to wait for the visitor's first message to be processed, before giving up.
NOT_READY_ATTEMPTS = 10
NOT_READY_RETRY = timedelta(seconds=2)


@job(service.PROOF_JOB)
async def send_email_proof(ctx: JobContext) -> None:
    """E-mail the confirmation link to the address the visitor typed (outside any transaction)."""
    channel_id = uuid.UUID(ctx.payload["channel_id"])
    visitor_id = uuid.UUID(ctx.payload["visitor_id"])
    try:
        async with ctx.db.transaction() as session:
            proof = await service.prepare_proof(
                session, channel_id, visitor_id, str(ctx.payload["email"])
            )
    except service.ProofNotReady as exc:
        if ctx.job.attempts < NOT_READY_ATTEMPTS:
            raise RetryLater("the visitor has no conversation yet", delay=NOT_READY_RETRY) from exc
        log.info("visitor %s never got a conversation: no proof e-mail", visitor_id)
        return
    if proof is None:
        return
    try:
        await get_adapter(proof.channel_type).send(http.client(), proof.channel, proof.message)
    except SendError as exc:
        if exc.retryable:
            raise RetryLater(str(exc)) from exc
        log.warning("proof e-mail for visitor %s refused: %s", visitor_id, exc)
        return
    async with ctx.db.transaction() as session:
        events.record(
            session,
            "webchat.email_proof_sent",
            workspace_id=proof.channel.workspace_id,
            actor=Actor.system(),
            channel_id=channel_id,
            conversation_id=proof.message.conversation_id,
        )
        await ctx.finish(session)
