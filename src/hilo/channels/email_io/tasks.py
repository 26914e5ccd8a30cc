"""The ``email.fetch`` job: an e-mail channel's IMAP mailbox, polled.

One job per mailbox, started with the channel; each run starts the next, committed together,
so exactly one poller is ever scheduled and a crash loses none. A run reads at most
:data:`BATCH` new messages (``BODY.PEEK[]``, so the server does not mark them read before
they are stored), stores each once per Message-ID through the same pipeline as webhooks,
then marks them ``\\Seen`` on the server. The job's payload carries the cursor
(``UIDVALIDITY`` and the last UID stored): later runs ask only for newer UIDs, so however
often the mailbox is polled a message lands once. The first run (or one after the server
renumbered the mailbox) takes the unread messages only, not the mailbox's whole history.

IMAP is spoken with the standard library's blocking client in a worker thread; no database
transaction is open meanwhile. A server that cannot be reached is retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import re
import ssl
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hilo import flows
from hilo.channels import service as channels
from hilo.channels.base import RawRequest
from hilo.channels.email import FETCH_JOB, Mailbox, mailbox
from hilo.clock import now
from hilo.jobs.registry import RetryLater, job
from hilo.jobs.service import enqueue
from hilo.jobs.worker import JobContext
from hilo.models import Channel

log = logging.getLogger(__name__)

BATCH = 20
IMAP_TIMEOUT = 20.0
_UID = re.compile(rb"\bUID (\d+)")


@dataclass
class Fetched:
    """What one poll read: the new messages by UID, and the cursor to resume from."""

    uidvalidity: int
    last_uid: int | None
    messages: list[tuple[int, bytes]] = field(default_factory=list)
    more: bool = False


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(response: tuple[str, Any], what: str) -> Any:
    status, data = response
    if status != "OK":
        raise imaplib.IMAP4.error(f"{what} failed: {status}")
    return data


class ImapConnection:
    """One IMAP connection to a mailbox (blocking; run it in a thread)."""

    def __init__(self, box: Mailbox) -> None:
        self.box = box
        if box.tls:
            context = ssl.create_default_context()
            self.conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                box.host, box.port, ssl_context=context, timeout=IMAP_TIMEOUT
            )
        else:
            self.conn = imaplib.IMAP4(box.host, box.port, timeout=IMAP_TIMEOUT)
            if box.starttls:
                self.conn.starttls(ssl.create_default_context())
        self.conn.login(box.username, box.password)
        _check(self.conn.select(_quote(box.folder)), "SELECT")

    def _selected(self, code: str) -> int:
        # SELECT's response codes ([UIDVALIDITY n], [UIDNEXT n]), kept by imaplib.
        _name, values = self.conn.response(code)
        value = values[0] if values and values[0] else b"0"
        return int(value)

    def new_messages(self, uidvalidity: int | None, last_uid: int | None) -> Fetched:
        current = self._selected("UIDVALIDITY")
        resuming = uidvalidity == current and last_uid is not None
        if resuming:
            assert last_uid is not None
            # "n:*" always matches the newest message, even one below n: filter.
            found = _check(self.conn.uid("SEARCH", "UID", f"{last_uid + 1}:*"), "SEARCH")
            uids = [u for u in _uids(found) if u > last_uid]
        else:
            found = _check(self.conn.uid("SEARCH", "UNSEEN"), "SEARCH")
            uids = _uids(found)
        taken = uids[:BATCH]
        more = len(uids) > BATCH
        if resuming or more:
            cursor = max(taken, default=last_uid)
        else:
            # A first look: every unread message is taken; the rest is the mailbox's past.
            past = self._selected("UIDNEXT") - 1
            cursor = max([*taken, *([past] if past > 0 else [])], default=None)
        fetched = Fetched(uidvalidity=current, last_uid=cursor, more=more)
        for uid in taken:
            data = _check(self.conn.uid("FETCH", str(uid), "(BODY.PEEK[])"), "FETCH")
            raw = next(
                (part[1] for part in data if isinstance(part, tuple) and _UID.search(part[0])),
                None,
            )
            if raw is not None:
                fetched.messages.append((uid, bytes(raw)))
        return fetched

    def mark_seen(self, uids: list[int]) -> None:
        if uids:
            uid_set = ",".join(str(u) for u in uids)
            _check(self.conn.uid("STORE", uid_set, "+FLAGS.SILENT", r"(\Seen)"), "STORE")

    def close(self) -> None:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            self.conn.logout()


def _uids(data: Any) -> list[int]:
    words = b" ".join(d for d in data if isinstance(d, bytes)).split()
    return sorted({int(w) for w in words if w.isdigit()})


@job(FETCH_JOB)
async def fetch_mailbox(ctx: JobContext) -> None:
    """Read the mailbox's new messages, store each once, and schedule the next poll."""
    channel_id = uuid.UUID(ctx.payload["channel_id"])
    async with ctx.db.transaction() as session:
        channel = await session.get(Channel, channel_id)
        box = mailbox(channels.context(channel)) if channel is not None else None
        if channel is None or not channel.active or box is None:
            await ctx.finish(session)  # the channel is gone or has no mailbox: stop polling
            return
    uidvalidity = ctx.payload.get("uidvalidity")
    last_uid = ctx.payload.get("last_uid")
    try:
        imap = await asyncio.to_thread(ImapConnection, box)
    except (imaplib.IMAP4.error, OSError) as exc:
        log.warning("IMAP mailbox of channel %s unreachable: %s", channel_id, exc)
        raise RetryLater(f"IMAP: {exc}") from exc
    try:
        fetched = await asyncio.to_thread(imap.new_messages, uidvalidity, last_uid)
        async with ctx.db.transaction() as session:
            channel = await session.get_one(Channel, channel_id)
            for uid, raw in fetched.messages:
                request = RawRequest(
                    body=raw,
                    headers={},
                    query={"source": "imap", "uid": str(uid)},
                    url=f"imap://{box.host}:{box.port}/{box.folder}",
                    received_at=now(),
                )
                await flows.receive_raw(session, channel=channel, request=request)
            stored = [uid for uid, _raw in fetched.messages]
            delay = timedelta(0) if fetched.more else timedelta(seconds=box.poll_seconds)
            enqueue(
                session,
                FETCH_JOB,
                {
                    "channel_id": str(channel_id),
                    "uidvalidity": fetched.uidvalidity,
                    "last_uid": fetched.last_uid,
                },
                workspace_id=channel.workspace_id,
                run_at=now() + delay,
            )
            await ctx.finish(session)
        if stored:
            log.info("IMAP: %d message(s) stored for channel %s", len(stored), channel_id)
        if stored and box.mark_seen:
            try:
                await asyncio.to_thread(imap.mark_seen, stored)
            except (imaplib.IMAP4.error, OSError) as exc:
                # Stored already, and the cursor moves past them: only the flag is missing.
                log.warning("IMAP: could not mark messages seen: %s", exc)
    except (imaplib.IMAP4.error, OSError) as exc:
        log.warning("IMAP mailbox of channel %s failed: %s", channel_id, exc)
        raise RetryLater(f"IMAP: {exc}") from exc
    finally:
        await asyncio.to_thread(imap.close)
