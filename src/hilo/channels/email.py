"""E-mail: Hilo's own SMTP listener and IMAP mailboxes in, an SMTP relay out.

Inbound mail reaches a channel two ways, both read by Hilo itself rather than posted to a
webhook: the SMTP listener (:mod:`hilo.channels.email_io.listener`), routed by the envelope
recipient to the channel that receives for that address, and the ``email.fetch`` job
(:mod:`hilo.channels.email_io.tasks`), which polls the channel's IMAP mailbox. Either way the
raw message is stored once per Message-ID through the same pipeline as webhooks, then
processed by the ``inbound.process`` job.

Threading: a signed reply token in the recipient (``support+c….…@domain``, see
:mod:`hilo.channels.email_io.addressing`), then ``In-Reply-To`` and ``References``, name the
conversation a reply joins; the flow follows them only into the same contact's
conversations. Bounces (RFC 3464 reports) mark the outbound message failed; automatic mail
(RFC 3834 ``Auto-Submitted``, out-of-office, lists) is kept with ``auto_reply: true`` so
nothing automatic ever answers it.

Outbound: multipart text + HTML through the channel's SMTP relay (aiosmtplib), with a
``Message-ID`` made from the message id (the same on every retry), ``In-Reply-To``,
``References``, ``Re:`` subject, the reply token in ``Reply-To`` and a VERP envelope sender.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import aiosmtplib
import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hilo.attachments.service import download
from hilo.channels.base import (
    ChannelContext,
    ChannelSetup,
    InboundItem,
    IngestResult,
    MediaError,
    MediaLocation,
    NoSetupCheck,
    OutboundMessage,
    RawRequest,
    ReplyDraft,
    Sender,
    SendError,
    SendResult,
)
from hilo.channels.email_io import addressing, mime
from hilo.contacts.service import normalise_email
from hilo.errors import InvalidPayload, InvalidSignature
from hilo.i18n import _
from hilo.settings import get_settings

log = logging.getLogger(__name__)

FETCH_JOB = "email.fetch"
SMTP_TIMEOUT = 30.0
# An attachment whose bytes are still only inside the stored raw mail (then ``stored``).
EMBEDDED = "embedded"
_SENDER_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    address: str = Field(min_length=3, max_length=254)
    addresses: list[str] = Field(default_factory=list, max_length=50)
    from_name: str = Field(default="", max_length=200)
    default_subject: str = Field(default="", max_length=200)
    smtp_host: str = Field(min_length=1, max_length=255)
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_username: str = Field(default="", max_length=320)
    smtp_password: str = Field(default="", max_length=1024)
    smtp_starttls: bool | None = None
    smtp_tls: bool = False
    imap_host: str = Field(default="", max_length=255)
    imap_port: int | None = Field(default=None, ge=1, le=65535)
    imap_username: str = Field(default="", max_length=320)
    imap_password: str = Field(default="", max_length=1024)
    imap_tls: bool = True
    imap_starttls: bool = False
    imap_folder: str = Field(default="INBOX", min_length=1, max_length=255)
    imap_poll_seconds: float = Field(default=60.0, ge=1, le=86400)
    imap_mark_seen: bool = True


def _email(value: str, field: str) -> str:
    address = normalise_email(value)
    if address is None or "+" in address.partition("@")[0]:
        raise InvalidPayload(
            _("{field} must be an e-mail address without a +tag."),
            code="invalid_config",
            field=field,
        )
    return address


@dataclass(frozen=True)
class Relay:
    """The outbound SMTP relay of a channel (``tls``: implicit; ``starttls``: upgraded)."""

    host: str
    port: int
    username: str
    password: str
    tls: bool
    starttls: bool


@dataclass(frozen=True)
class Mailbox(Relay):
    """The IMAP mailbox a channel polls: a server like the relay, and what to read."""

    folder: str
    poll_seconds: float
    mark_seen: bool


def receiving_addresses(config: Mapping[str, Any]) -> list[str]:
    """The addresses a channel receives for, its own address first."""
    found = [str(config.get("address") or "")]
    found += [str(a) for a in config.get("addresses") or []]
    return [a for a in dict.fromkeys(found) if a]


def mailbox(channel: ChannelContext) -> Mailbox | None:
    """The channel's IMAP mailbox, if it has one."""
    config = channel.config
    if not config.get("imap_host"):
        return None
    return Mailbox(
        host=str(config["imap_host"]),
        port=int(config["imap_port"]),
        username=str(config.get("imap_username") or ""),
        password=str(channel.secrets.get("imap_password") or ""),
        tls=bool(config.get("imap_tls")),
        starttls=bool(config.get("imap_starttls")),
        folder=str(config.get("imap_folder") or "INBOX"),
        poll_seconds=float(config.get("imap_poll_seconds") or 60),
        mark_seen=bool(config.get("imap_mark_seen", True)),
    )


def own_message_id(message_id: uuid.UUID, address: str) -> str:
    """The Message-ID (without brackets) of Hilo's reply ``message_id``: stable on retries."""
    return f"{message_id}@{addressing.split(address)[2]}"


def _unsupported(provider_event_id: str, reason: str, **data: Any) -> InboundItem:
    return InboundItem(
        provider_event_id=provider_event_id, kind="unsupported", data={"reason": reason, **data}
    )


def _defects(message: Any) -> list[str]:
    return sorted({type(d).__name__ for part in message.walk() for d in part.defects})


class EmailChannel(NoSetupCheck):
    type: ClassVar[str] = "email"
    label: ClassVar[str] = _("E-mail")
    setup_help: ClassVar[str] = _(
        "Send the support address's mail to Hilo's SMTP listener (an MX record or forwarding), "
        "or give Hilo an IMAP mailbox to poll; replies go out through your SMTP relay."
    )
    providers: ClassVar[tuple[str, ...]] = ("smtp",)
    # The sender's address is the contact's e-mail identity, shared with chat and forms.
    identity_kind: ClassVar[str] = "email"
    identity_scope: ClassVar[str] = "workspace"
    # E-mail unsubscribes through List-Unsubscribe, not by replying STOP.
    supports_opt_out: ClassVar[bool] = False

    def validate_config(self, provider: str, config: dict[str, Any]) -> ChannelSetup:
        try:
            parsed = _Config.model_validate(config)
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in e["loc"]) or "config" for e in exc.errors()})
            raise InvalidPayload(
                _("Invalid e-mail settings: check the fields {fields}."),
                code="invalid_config",
                fields=", ".join(fields),
            ) from exc
        address = _email(parsed.address, "address")
        aliases = [_email(a, "addresses") for a in parsed.addresses]
        if parsed.smtp_tls and parsed.smtp_starttls:
            raise InvalidPayload(
                _("smtp_tls and smtp_starttls cannot both be on: choose one."),
                code="invalid_config",
            )
        starttls = not parsed.smtp_tls if parsed.smtp_starttls is None else parsed.smtp_starttls
        public: dict[str, Any] = {
            "address": address,
            "addresses": receiving_addresses({"address": address, "addresses": aliases}),
            "from_name": parsed.from_name,
            "default_subject": parsed.default_subject,
            "smtp_host": parsed.smtp_host,
            "smtp_port": parsed.smtp_port or (465 if parsed.smtp_tls else 587 if starttls else 25),
            "smtp_username": parsed.smtp_username,
            "smtp_tls": parsed.smtp_tls,
            "smtp_starttls": starttls,
        }
        secrets: dict[str, Any] = {"smtp_password": parsed.smtp_password}
        jobs: tuple[str, ...] = ()
        if parsed.imap_host:
            if not parsed.imap_username or not parsed.imap_password:
                raise InvalidPayload(
                    _("imap_username and imap_password are needed with imap_host."),
                    code="invalid_config",
                )
            if parsed.imap_tls and parsed.imap_starttls:
                raise InvalidPayload(
                    _("imap_tls and imap_starttls cannot both be on: choose one."),
                    code="invalid_config",
                )
            public.update(
                imap_host=parsed.imap_host,
                imap_port=parsed.imap_port or (993 if parsed.imap_tls else 143),
                imap_username=parsed.imap_username,
                imap_tls=parsed.imap_tls,
                imap_starttls=parsed.imap_starttls,
                imap_folder=parsed.imap_folder,
                imap_poll_seconds=parsed.imap_poll_seconds,
                imap_mark_seen=parsed.imap_mark_seen,
            )
            secrets["imap_password"] = parsed.imap_password
            jobs = (FETCH_JOB,)
        return ChannelSetup(config=public, secrets=secrets, jobs=jobs)

    def verify(self, request: RawRequest, channel: ChannelContext) -> None:
        # Mail is read by Hilo itself (SMTP listener, IMAP): a POST to the webhook URL is
        # nobody's delivery, and must not be a way to write into conversations.
        raise InvalidSignature(
            _("E-mail arrives through SMTP or IMAP, not through this webhook."),
            code="email_has_no_webhook",
        )

    def parse_inbound(self, request: RawRequest, channel: ChannelContext) -> list[InboundItem]:
        try:
            # The round trip drops what no database stores (see InboundItem.to_json).
            return [InboundItem.from_json(self._item(request, channel).to_json())]
        except Exception:
            # Mail is arbitrary bytes from anyone: one that trips the reader must neither
            # fail the SMTP session nor block an IMAP mailbox. Its raw bytes are kept.
            log.exception("mail on channel %s could not be read; kept as unsupported", channel.id)
            return [_unsupported(self._fallback_id(request.body), "unreadable")]

    def _fallback_id(self, raw: bytes) -> str:
        return "sha256:" + hashlib.sha256(raw).hexdigest()

    def _item(self, request: RawRequest, channel: ChannelContext) -> InboundItem:
        message = mime.read(request.body)
        ids = mime.message_ids(mime.header(message, "Message-ID"))
        provider_id = ids[0] if ids else self._fallback_id(request.body)
        own = set(receiving_addresses(channel.config))
        envelope = [r for r in request.query.get("rcpt_to", "").split(",") if r.strip()]
        headed = [a for _name, a in mime.addresses(message, *_SENDER_HEADERS)]
        tokens = [
            token
            for recipient in [*envelope, *headed]
            if addressing.base(recipient) in own
            and (token := addressing.read_token(addressing.split(recipient)[1], channel.id))
        ]
        bounced = [t.object_id for t in tokens if t.kind == addressing.BOUNCE]
        address = str(channel.config.get("address") or "")
        report = mime.delivery_report(message)
        if report is not None:
            original = report.original_message_id or (
                own_message_id(bounced[0], address) if bounced else None
            )
            return self._bounce(provider_id, report, original)
        senders = mime.addresses(message, "From")
        if not senders:
            return _unsupported(provider_id, "no_sender", mime_defects=_defects(message))
        name, sender = senders[0]
        if addressing.base(sender) in own:
            # Our own mail coming back (a forwarding loop): never a customer message.
            return _unsupported(provider_id, "own_address")
        bodies = mime.bodies(message)
        full, truncated = mime.clip(bodies.text)
        shown = mime.strip_quoted(full)
        subject = mime.header(message, "Subject")
        in_reply_to = mime.message_ids(mime.header(message, "In-Reply-To"))
        references = mime.message_ids(mime.header(message, "References"))
        reason = mime.auto_reason(message, envelope_from=request.query.get("mail_from"))
        data: dict[str, Any] = {
            "subject": subject,
            "message_id": provider_id,
            "in_reply_to": in_reply_to[0] if in_reply_to else None,
            "references": references[-mime.MAX_REFERENCES :],
            "from": sender,
            "to": [a for _n, a in mime.addresses(message, "To")],
            "cc": [a for _n, a in mime.addresses(message, "Cc")],
            "source": request.query.get("source", "smtp"),
            "auto_reply": reason is not None,
        }
        if reason is not None:
            data["auto_reply_reason"] = reason
        if shown != full.strip():
            data["full_text"] = full
        if bodies.html:
            data["from_html"] = True
        if truncated:
            data["truncated"] = True
        defects = _defects(message)
        if defects:
            data["mime_defects"] = defects
        moment = mime.sent_at(message)
        conversations = [t.object_id for t in tokens if t.kind == addressing.CONVERSATION]
        return InboundItem(
            provider_event_id=provider_id,
            kind="message",
            sender=Sender(external_id=sender, name=name or None),
            text=shown or subject,
            attachments=[
                {**entry, "status": EMBEDDED}
                for entry, _content in mime.files(message, bodies.parts)
            ],
            sent_at=moment.isoformat() if moment else None,
            data=data,
            thread_conversation_id=str(conversations[0]) if conversations else None,
            # Nearest first: the message answered, then the thread's history backwards.
            thread_refs=list(
                dict.fromkeys(
                    [
                        *in_reply_to,
                        *reversed(references),
                        *(own_message_id(b, address) for b in bounced),
                    ]
                )
            ),
        )

    def _bounce(
        self, provider_id: str, report: mime.DeliveryReport, original: str | None
    ) -> InboundItem:
        facts = {
            "action": report.action,
            "dsn_status": report.status,
            "recipient": report.recipient,
        }
        if original is None:
            return _unsupported(provider_id, "bounce_unmatched", **facts)
        if report.action == "failed":
            status = "failed"
        elif report.action == "delivered":
            status = "delivered"
        else:  # delayed, relayed, expanded: news, not an outcome
            return _unsupported(provider_id, f"bounce_{report.action or 'unknown'}", **facts)
        return InboundItem(
            provider_event_id=provider_id,
            kind="status",
            data={
                "provider_message_id": original,
                "status": status,
                "error": report.error if status == "failed" else None,
                **facts,
            },
        )

    def acknowledge(self, results: list[IngestResult]) -> tuple[int, Any]:
        return 200, {
            "message_ids": [str(r.message_id) for r in results],
            "duplicate": all(r.duplicate for r in results),
        }

    def check_send(self, channel: ChannelContext, draft: ReplyDraft) -> None:
        """Any reply may go by e-mail at any time; only the files' total size is bounded."""
        total = sum(int(a.get("size") or 0) for a in draft.attachments)
        if total > get_settings().media_max_bytes:
            raise InvalidPayload(
                _("The files are too large for one e-mail."), code="attachments_too_large"
            )

    def embedded_files(
        self, raw: bytes, attachments: Sequence[Mapping[str, Any]]
    ) -> list[bytes | None]:
        """The bytes of each attachment still inside the stored raw mail (None: not there)."""
        message = mime.read(raw)
        return [
            mime.file_at(message, str(a.get("part")))
            if a.get("status") == EMBEDDED and a.get("part")
            else None
            for a in attachments
        ]

    async def send(
        self, client: httpx.AsyncClient, channel: ChannelContext, message: OutboundMessage
    ) -> SendResult:
        config = channel.config
        address = str(config.get("address") or "")
        if not address or not config.get("smtp_host"):
            raise SendError("the channel has no address or SMTP relay", retryable=False)
        relay = Relay(
            host=str(config["smtp_host"]),
            port=int(config.get("smtp_port") or 25),
            username=str(config.get("smtp_username") or ""),
            password=str(channel.secrets.get("smtp_password") or ""),
            tls=bool(config.get("smtp_tls")),
            starttls=bool(config.get("smtp_starttls")),
        )
        parent = message.in_reply_to
        parent_data = parent.data if parent is not None else {}
        parent_id = parent.provider_message_id if parent is not None else None
        subject = str(parent_data.get("subject") or "")
        references = [str(r) for r in parent_data.get("references") or []]
        from_name = str(config.get("from_name") or "")
        message_id = own_message_id(message.message_id, address)
        conversation_token = addressing.make_token(
            addressing.CONVERSATION, channel.id, message.conversation_id
        )
        bounce_token = addressing.make_token(addressing.BOUNCE, channel.id, message.message_id)
        files = await self._files(client, message.attachments)
        mail = mime.compose(
            mime.Outgoing(
                from_name=from_name,
                from_address=address,
                to=message.recipient,
                subject=mime.reply_subject(subject)
                if subject
                else str(config.get("default_subject") or from_name or address),
                text=message.text,
                message_id=message_id,
                date=message.created_at,
                reply_to=addressing.with_tag(address, conversation_token),
                in_reply_to=parent_id,
                references=tuple([*references, parent_id] if parent_id else references),
                files=files,
            )
        )
        await self._deliver(
            relay,
            mail,
            sender=addressing.with_tag(address, bounce_token) or address,
            recipient=message.recipient,
            helo=addressing.split(address)[2],
        )
        log.info("e-mail reply %s handed to %s", message.message_id, relay.host)
        return SendResult(provider_message_id=message_id)

    async def _files(
        self, client: httpx.AsyncClient, attachments: list[dict[str, Any]]
    ) -> tuple[tuple[str, str, bytes], ...]:
        # An agent's files are fetched through their signed link, as other providers do.
        found: list[tuple[str, str, bytes]] = []
        for index, attachment in enumerate(attachments, start=1):
            if not attachment.get("link"):
                continue
            mime_type = str(attachment.get("mime_type") or "application/octet-stream")
            location = MediaLocation(url=str(attachment["link"]), mime_type=mime_type)
            try:
                got = await download(client, location, limit=get_settings().media_max_bytes)
            except MediaError as exc:
                raise SendError(f"file {index}: {exc}", retryable=exc.retryable) from exc
            if got.content is None:
                raise SendError(f"file {index} is too large to send", retryable=False)
            name = str(attachment.get("filename") or f"file-{index}")
            found.append((name, mime_type, got.content))
        return tuple(found)

    async def _deliver(
        self, relay: Relay, mail: Any, *, sender: str, recipient: str, helo: str
    ) -> None:
        try:
            await aiosmtplib.send(
                mail,
                sender=sender,
                recipients=[recipient],
                hostname=relay.host,
                port=relay.port,
                username=relay.username or None,
                password=relay.password or None,
                use_tls=relay.tls,
                start_tls=relay.starttls,
                local_hostname=helo,
                timeout=SMTP_TIMEOUT,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0] if exc.recipients else None
            code = refused.code if refused else 550
            text = refused.message if refused else str(exc)
            raise SendError(
                f"SMTP {code}: {text}",
                retryable=400 <= code < 500,
                provider_error={"code": code, "message": text},
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise SendError(
                f"SMTP {exc.code}: {exc.message}",
                retryable=not 500 <= exc.code < 600,
                provider_error={"code": exc.code, "message": exc.message},
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
