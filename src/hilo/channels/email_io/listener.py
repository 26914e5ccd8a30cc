"""Hilo's own SMTP server for inbound mail (aiosmtpd), run beside the HTTP API.

Point a domain's MX (or a forwarding rule of the company's mail server) at it. Each envelope
recipient is routed to the e-mail channel that receives for its address, plus tag aside; an
address no channel receives for is refused with ``550``, a message over
``HILO_SMTP_MAX_MESSAGE_BYTES`` with ``552``. ``250`` is answered only once the raw message
is committed, once per channel, with its ``inbound.process`` job: the same durable pipeline
as a webhook, so a sender's retry never duplicates a message and nothing acknowledged is
lost. A storage failure answers ``451``, and the sending server tries again later.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from urllib.parse import urlsplit

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession

from hilo import flows
from hilo.channels.base import RawRequest
from hilo.channels.email_io import repository
from hilo.clock import now
from hilo.db import Database
from hilo.models import Channel
from hilo.settings import Settings

log = logging.getLogger(__name__)

TRY_LATER = "451 4.3.0 The message could not be stored now; try again later"


class _Handler:
    """aiosmtpd's hooks: accept a recipient only for a channel, the data only once stored."""

    def __init__(self, db: Database, url: str) -> None:
        self.db = db
        self.url = url

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        try:
            async with self.db.transaction() as db:
                channel = await repository.channel_for_address(db, address)
        except Exception:
            log.exception("SMTP: looking up a recipient failed")
            return TRY_LATER
        if channel is None:
            log.info("SMTP: refused a recipient no e-mail channel receives for")
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            async with self.db.transaction() as db:
                recipients: dict[uuid.UUID, tuple[Channel, list[str]]] = {}
                for address in envelope.rcpt_tos:
                    channel = await repository.channel_for_address(db, address)
                    if channel is not None:
                        recipients.setdefault(channel.id, (channel, []))[1].append(address)
                for channel, addresses in recipients.values():
                    request = RawRequest(
                        body=raw,
                        headers={},
                        query={
                            "source": "smtp",
                            "rcpt_to": ",".join(addresses),
                            "mail_from": envelope.mail_from or "",
                        },
                        url=self.url,
                        received_at=now(),
                    )
                    await flows.receive_raw(db, channel=channel, request=request)
        except Exception:
            log.exception("SMTP: storing a message of %d bytes failed", len(raw))
            return TRY_LATER
        if not recipients:  # every channel went away between RCPT and DATA
            return "550 5.1.1 No such mailbox here"
        log.info("SMTP: message of %d bytes stored for %d channel(s)", len(raw), len(recipients))
        return "250 2.0.0 OK: stored"


class SmtpListener:
    """Starts and stops the SMTP server when ``HILO_SMTP_LISTEN_PORT`` is set."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen, if a port is configured."""
        settings = self.settings
        if not settings.smtp_listen_port:
            return
        loop = asyncio.get_running_loop()
        hostname = urlsplit(settings.public_url).hostname or "localhost"
        url = f"smtp://{settings.smtp_listen_host}:{settings.smtp_listen_port}"
        handler = _Handler(self.db, url)
        self._server = await loop.create_server(
            lambda: SMTP(
                handler,
                data_size_limit=settings.smtp_max_message_bytes,
                enable_SMTPUTF8=True,
                hostname=hostname,
                ident="Hilo ESMTP",
                loop=loop,
            ),
            host=settings.smtp_listen_host,
            port=settings.smtp_listen_port,
            # Several API processes on one machine share the port.
            reuse_port=True,
        )
        log.info("SMTP listener on %s", url)

    async def stop(self) -> None:
        """Stop accepting connections."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
