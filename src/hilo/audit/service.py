"""The seal of the event log: a per-workspace hash chain with signed checkpoints.

Events are written unsealed in the transaction of each change, so ingest never waits on a
chain head. After commit, :func:`seal_pending` chains them in batches under a lock on the
workspace's ``audit_heads`` row and signs a checkpoint per batch. :func:`verify` walks the
chain again and reports deleted, edited, reordered or forged entries. The chain covers
digests, not content, so :func:`redact_events` can erase a person's data and leave the chain
whole, provided the erasure is itself on the record.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from cryptography.exceptions import InvalidSignature
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events
from hilo.clock import aware, now
from hilo.crypto import signing_key
from hilo.db import Database
from hilo.events import Actor
from hilo.models import AuditCheckpoint, AuditHead, Event, Workspace

log = logging.getLogger(__name__)

GENESIS = "0" * 64
REDACTED_TYPE = "audit.redacted"
# How many sealed events verification reads per query: bounded memory on long logs.
_VERIFY_PAGE = 1000


@dataclass
class VerifyReport:
    """The outcome of verifying one workspace's chain."""

    ok: bool
    checked: int
    problems: list[str] = field(default_factory=list)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _uuid(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None


def event_digest(event: Event) -> str:
    """SHA-256 hex of the canonical JSON of an event's content fields."""
    content: dict[str, Any] = {
        "id": event.id,
        "workspace_id": str(event.workspace_id),
        "type": event.type,
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "channel_id": _uuid(event.channel_id),
        "conversation_id": _uuid(event.conversation_id),
        "contact_id": _uuid(event.contact_id),
        "message_id": _uuid(event.message_id),
        "data": event.data,
        "created_at": aware(event.created_at).astimezone(UTC).isoformat(),
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _sha256(canonical)


def next_chain(previous: str, digest: str) -> str:
    """The chain hash after appending ``digest`` to a chain ending in ``previous``."""
    return _sha256(previous + digest)


def _checkpoint_message(workspace_id: uuid.UUID, seq: int, chain: str) -> bytes:
    return f"{workspace_id}:{seq}:{chain}".encode()


def sign_checkpoint(workspace_id: uuid.UUID, seq: int, chain: str) -> str:
    """Base64 Ed25519 signature over ``"{workspace_id}:{seq}:{chain}"``."""
    signature = signing_key().sign(_checkpoint_message(workspace_id, seq, chain))
    return base64.b64encode(signature).decode()


def checkpoint_signature_ok(checkpoint: AuditCheckpoint) -> bool:
    """Whether a checkpoint's signature verifies with the audit public key."""
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
        signing_key().public_key().verify(
            signature,
            _checkpoint_message(checkpoint.workspace_id, checkpoint.seq, checkpoint.chain),
        )
    except (InvalidSignature, ValueError):
        return False
    return True


async def _lock_head(session: AsyncSession, db: Database, workspace_id: uuid.UUID) -> AuditHead:
    """The workspace's head row, created if missing and locked until the transaction ends."""
    # FOR UPDATE serialises sealers on PostgreSQL; SQLite ignores it because every
    # transaction there is BEGIN IMMEDIATE and so already holds the write lock.
    query = (
        select(AuditHead)
        .where(AuditHead.workspace_id == workspace_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    head = await session.scalar(query)
    if head is not None:
        return head
    insert = pg_insert if not db.is_sqlite else sqlite_insert
    # Two sealers may both find no head: ON CONFLICT lets the loser wait and then lock
    # the winner's row instead of failing on the primary key.
    await session.execute(
        insert(AuditHead)
        .values(workspace_id=workspace_id, seq=0, chain=GENESIS, updated_at=now())
        .on_conflict_do_nothing(index_elements=["workspace_id"])
    )
    head = await session.scalar(query)
    if head is None:  # pragma: no cover - the insert above guarantees a row
        raise RuntimeError(f"audit head of workspace {workspace_id} vanished")
    return head


async def _seal_batch(db: Database, workspace_id: uuid.UUID, batch_size: int) -> int:
    """Chain up to ``batch_size`` unsealed events of one workspace; one transaction."""
    async with db.transaction() as session:
        head = await _lock_head(session, db, workspace_id)
        # Read only after the lock: a sealer that waited must see what the other one sealed.
        pending = (
            await session.scalars(
                select(Event)
                .where(Event.workspace_id == workspace_id, Event.seq.is_(None))
                .order_by(Event.id)
                .limit(batch_size)
            )
        ).all()
        if not pending:
            return 0
        seq, chain = head.seq, head.chain
        for event in pending:
            digest = event_digest(event)
            seq += 1
            chain = next_chain(chain, digest)
            event.seq, event.digest, event.chain = seq, digest, chain
        head.seq, head.chain, head.updated_at = seq, chain, now()
        session.add(
            AuditCheckpoint(
                workspace_id=workspace_id,
                seq=seq,
                chain=chain,
                signature=sign_checkpoint(workspace_id, seq, chain),
                created_at=now(),
            )
        )
        return len(pending)


async def seal_pending(db: Database, *, batch_size: int = 500) -> int:
    """Chain and checkpoint every committed unsealed event; return how many were sealed."""
    async with db.read() as session:
        workspace_ids = list(
            (
                await session.scalars(
                    select(Event.workspace_id).where(Event.seq.is_(None)).distinct()
                )
            ).all()
        )
    total = 0
    for workspace_id in workspace_ids:
        while True:
            sealed = await _seal_batch(db, workspace_id, batch_size)
            total += sealed
            # A short batch means the backlog is drained (or another sealer took it).
            if sealed < batch_size:
                break
    return total


async def redact_events(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    event_ids: Sequence[int],
    actor: Actor,
) -> Event:
    """Erase the data of events of a workspace, keeping their digests, and record it."""
    found = sorted(
        (
            await session.scalars(
                select(Event.id).where(
                    Event.workspace_id == workspace_id, Event.id.in_(list(event_ids))
                )
            )
        ).all()
    )
    if found:
        # digest and chain stay: the chain must still link, and the audit.redacted event
        # below is what lets verification accept the missing content.
        await session.execute(
            update(Event)
            .where(Event.workspace_id == workspace_id, Event.id.in_(found))
            .values(data={}, redacted=True)
        )
    return events.record(
        session,
        REDACTED_TYPE,
        workspace_id=workspace_id,
        actor=actor,
        data={"event_ids": found},
    )


def _ids_listed(data: dict[str, Any]) -> set[int]:
    listed = data.get("event_ids")
    if not isinstance(listed, list):
        return set()
    return {item for item in listed if isinstance(item, int) and not isinstance(item, bool)}


async def verify(db: Database, *, workspace_slug: str) -> VerifyReport:
    """Seal what is pending, then check one workspace's chain against its signed checkpoints."""
    await seal_pending(db)
    problems: list[str] = []
    checked = 0
    async with db.transaction() as session:
        if not db.is_sqlite:
            # One snapshot for the whole walk: a sealer committing meanwhile must not show us
            # its checkpoint without its events, or the reverse. (SQLite's BEGIN IMMEDIATE
            # already excludes writers.)
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        workspace_id = await session.scalar(
            select(Workspace.id).where(Workspace.slug == workspace_slug)
        )
        if workspace_id is None:
            return VerifyReport(ok=False, checked=0, problems=["unknown workspace"])

        redactions = (
            await session.scalars(
                select(Event.data).where(
                    Event.workspace_id == workspace_id,
                    Event.type == REDACTED_TYPE,
                    Event.seq.is_not(None),
                )
            )
        ).all()
        allowed_redactions: set[int] = set()
        for data in redactions:
            allowed_redactions |= _ids_listed(data)

        checkpoints = (
            await session.scalars(
                select(AuditCheckpoint)
                .where(AuditCheckpoint.workspace_id == workspace_id)
                .order_by(AuditCheckpoint.seq, AuditCheckpoint.id)
            )
        ).all()
        signed: dict[int, str] = {}
        for checkpoint in checkpoints:
            if checkpoint_signature_ok(checkpoint):
                signed[checkpoint.seq] = checkpoint.chain
            else:
                problems.append(
                    f"checkpoint {checkpoint.id} (seq {checkpoint.seq}): invalid signature"
                )

        chain = GENESIS
        last_seq = 0
        while True:
            query = select(Event).where(Event.workspace_id == workspace_id, Event.seq.is_not(None))
            if checked:
                query = query.where(Event.seq > last_seq)
            page = (await session.scalars(query.order_by(Event.seq).limit(_VERIFY_PAGE))).all()
            if not page:
                break
            for event in page:
                seq = event.seq
                assert seq is not None  # the query filters on seq
                if seq != last_seq + 1:
                    problems.append(
                        f"seq {last_seq + 1}..{seq - 1}: missing (deleted events)"
                        if seq > last_seq + 1
                        else f"seq {seq} (event {event.id}): out of range"
                    )
                if event.redacted:
                    if event.id not in allowed_redactions:
                        problems.append(
                            f"seq {seq} (event {event.id}): redacted without an "
                            f"{REDACTED_TYPE} record"
                        )
                elif event.digest != event_digest(event):
                    problems.append(f"seq {seq} (event {event.id}): content does not match digest")
                chain = next_chain(chain, event.digest or "")
                if event.chain != chain:
                    problems.append(f"seq {seq} (event {event.id}): chain does not link")
                    # Carry on from the stored value so that one break is reported once.
                    chain = event.chain or ""
                if seq in signed and signed[seq] != chain:
                    problems.append(f"seq {seq}: chain differs from its signed checkpoint")
                checked += 1
                last_seq = seq

    if signed:
        latest_seq = max(signed)
        # Deleting the newest events (and rewinding the head) leaves a shorter log than the
        # last signature vouches for; the chain at that seq was compared in the walk.
        if latest_seq != last_seq:
            problems.append(
                f"the log ends at seq {last_seq} but the latest signed checkpoint is "
                f"seq {latest_seq}"
            )
    elif checked:
        problems.append("no valid signed checkpoint covers the log")
    return VerifyReport(ok=not problems, checked=checked, problems=problems)
