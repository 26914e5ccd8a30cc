"""The e-mail channel end to end, through real servers, on SQLite and PostgreSQL.

Customers' mail reaches Hilo as it would in production: Python's ``smtplib`` talks SMTP to
Hilo's own listener, and a real Dovecot (started here on a free port) is the IMAP mailbox
Hilo polls. Hilo's replies go out through a local SMTP relay (an aiosmtpd server started
here) that keeps what it receives. Fixtures are raw messages under ``tests/fixtures/email``
(see its SOURCES.txt) with placeholders filled in per test.
"""

from __future__ import annotations

import asyncio
import email
import imaplib
import os
import shutil
import smtplib
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from hilo.channels.email_io import addressing, mime
from tests.conftest import REQUIRE_PG, Api, Server, dispose_server, free_port, make_server, wait_for
from tests.core.test_api_channel import timeline

FIXTURES = Path(__file__).parent.parent / "fixtures" / "email"
MAX_MESSAGE_BYTES = 300_000
WAIT = 20.0


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Hilo with its SMTP listener on, per database (the ``api`` fixture uses this one)."""
    srv = make_server(
        request.param,
        tmp_path_factory.mktemp(f"email-{request.param}"),
        extra_env={
            "HILO_SMTP_LISTEN_PORT": str(free_port()),
            "HILO_SMTP_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
        },
    )
    srv.start()
    yield srv
    dispose_server(srv)


def smtp_port(server: Server) -> int:
    return int(server.env["HILO_SMTP_LISTEN_PORT"])


# -- the company's SMTP relay -------------------------------------------------------------------


@dataclass
class Captured:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Relay:
    """A local SMTP relay: keeps what Hilo sends; refuses (550) or defers (451) on demand."""

    received: list[Captured] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    defer_once: set[str] = field(default_factory=set)
    controller: Controller | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        assert self.controller is not None
        return int(self.controller.port)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            if address in self.refuse:
                return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
            if address in self.defer_once:
                self.defer_once.discard(address)
                return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.received.append(
                Captured(
                    str(envelope.mail_from),
                    list(envelope.rcpt_tos),
                    envelope.original_content or b"",
                )
            )
        return "250 2.0.0 Ok: queued"

    def to(self, recipient: str) -> list[Captured]:
        with self.lock:
            return [c for c in self.received if recipient in c.rcpt_tos]


@pytest.fixture(scope="module")
def relay() -> Iterator[Relay]:
    fake = Relay()
    fake.controller = Controller(
        fake, hostname="127.0.0.1", port=free_port(), server_hostname="relay.example.test"
    )
    fake.controller.start()
    yield fake
    fake.controller.stop()


# -- helpers ------------------------------------------------------------------------------------


def new_address(local: str = "cliente", domain: str = "example.org") -> str:
    return f"{local}-{uuid.uuid4().hex[:10]}@{domain}"


def new_id() -> str:
    return f"{uuid.uuid4().hex}@mail.example.org"


def mail(name: str, **values: str) -> bytes:
    """A fixture with its ``@@NAME@@`` placeholders filled (a fresh ``ID`` by default)."""
    raw = (FIXTURES / name).read_bytes()
    values.setdefault("id", new_id())
    for key, value in values.items():
        raw = raw.replace(f"@@{key.upper()}@@".encode(), value.encode())
    return raw.replace(b"\n", b"\r\n")  # on the wire, lines end in CRLF


def deliver(
    server: Server, raw: bytes, *, to: str | list[str], sender: str = "sender@example.org"
) -> None:
    """Send ``raw`` to Hilo's SMTP listener, as a mail server would (``sender`` "": <>)."""
    recipients = [to] if isinstance(to, str) else to
    with smtplib.SMTP("127.0.0.1", smtp_port(server), timeout=15) as smtp:
        refused = smtp.sendmail(sender, recipients, raw)
    assert refused == {}


def create_email_channel(api: Api, relay: Relay, **config: Any) -> dict[str, Any]:
    address = new_address("soporte", "hub.example.test")
    body = {
        "type": "email",
        "name": "Soporte",
        "config": {
            "address": address,
            "from_name": "Soporte Acme",
            "smtp_host": "127.0.0.1",
            "smtp_port": relay.port,
            "smtp_starttls": False,
            **config,
        },
    }
    response = api.post("/api/v1/channels", json=body)
    assert response.status_code == 201, response.text
    channel: dict[str, Any] = response.json()
    return channel


def contact_of(api: Api, address: str) -> dict[str, Any] | None:
    items = api.get("/api/v1/contacts", params={"email": address}).json()["items"]
    return items[0] if items else None


def messages_of(api: Api, address: str) -> list[dict[str, Any]]:
    contact = contact_of(api, address)
    return timeline(api, contact["id"]) if contact else []


def wait_message(
    api: Api, address: str, where: Callable[[dict[str, Any]], bool] = lambda m: True
) -> dict[str, Any]:
    """The customer's message matching ``where``, once Hilo has processed it."""
    found: dict[str, Any] = wait_for(
        lambda: next(
            (m for m in messages_of(api, address) if m["kind"] == "inbound" and where(m)), None
        ),
        timeout=WAIT,
        message=f"a message from {address}",
    )
    return found


def conversation_messages(api: Api, conversation_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/api/v1/conversations/{conversation_id}/messages")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def wait_status(api: Api, message: dict[str, Any], status: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        for item in conversation_messages(api, message["conversation_id"]):
            if item["id"] == message["id"] and item["status"] == status:
                return item
        return None

    found: dict[str, Any] = wait_for(check, timeout=WAIT, message=f"message {status}")
    return found


def reply(api: Api, conversation_id: str, text: str, **extra: Any) -> dict[str, Any]:
    response = api.post(
        f"/api/v1/conversations/{conversation_id}/messages", json={"text": text, **extra}
    )
    assert response.status_code == 202, response.text
    sent: dict[str, Any] = response.json()
    return sent


def captured(relay: Relay, recipient: str) -> Captured:
    found: list[Captured] = wait_for(
        lambda: relay.to(recipient), timeout=WAIT, message=f"mail to {recipient}"
    )
    return found[-1]


def inbound_statuses(server: Server, provider_event_id: str) -> list[str]:
    """How Hilo stored and processed a delivery (one row per channel it reached)."""
    from hilo.db import Database
    from hilo.models import InboundEvent

    async def go() -> list[str]:
        db = Database(server.db_url, pool_size=1)
        try:
            async with db.transaction() as session:
                query = select(InboundEvent.status).where(
                    InboundEvent.provider_event_id == provider_event_id
                )
                return list((await session.scalars(query)).all())
        finally:
            await db.dispose()

    return asyncio.run(go())


def first_mail(api: Api, relay: Relay, channel: dict[str, Any], customer: str) -> dict[str, Any]:
    """The customer writes; their message, once in a conversation."""
    message_id = new_id()
    raw = mail(
        "iso_8859_1_quoted_printable.eml",
        id=message_id,
        **{"from": customer, "to": channel["config"]["address"]},
    )
    deliver(api.server, raw, to=channel["config"]["address"])
    return wait_message(api, customer, lambda m: m["provider_message_id"] == message_id)


def answered(
    api: Api, relay: Relay, message: dict[str, Any], text: str
) -> tuple[dict[str, Any], Captured]:
    """An agent's reply to ``message``, once the relay has it and Hilo recorded it sent."""
    sent = reply(api, message["conversation_id"], text)
    customer = message["data"]["from"]
    got = captured(relay, customer)
    return wait_status(api, sent, "sent"), got


def answer_by_mail(
    api: Api, *, customer: str, to: str, outbound: dict[str, Any], first: dict[str, Any]
) -> str:
    """The customer answers Hilo's reply ``outbound`` to ``first`` from their mail client."""
    answer_id = new_id()
    raw = mail(
        "spanish_gmail_reply.eml",
        id=answer_id,
        in_reply_to=outbound["provider_message_id"],
        references=first["provider_message_id"],
        **{"from": customer, "to": to},
    )
    deliver(api.server, raw, to=to)
    return answer_id


# -- a conversation by e-mail -------------------------------------------------------------------


def test_mail_to_the_listener_is_answered_through_the_relay_and_the_reply_threads_back(
    api: Api, relay: Relay
) -> None:
    channel = create_email_channel(api, relay)
    address = channel["config"]["address"]
    customer = new_address()
    first = first_mail(api, relay, channel, customer)
    assert first["text"] == (
        "Hola, pedí un camión de juguete para mi niño y aún no ha llegado.\n"
        "¿Me podéis decir cuándo llegará? Gracias, señores."
    )
    assert first["data"]["subject"] == "¿Dónde está mi pedido?"
    assert first["data"]["auto_reply"] is False
    contact = contact_of(api, customer)
    assert contact is not None and contact["name"] == "José María Peña"

    text = "Hola José, tu pedido llega mañana.\n\n<b>Gracias</b> & un saludo"
    outbound, got = answered(api, relay, first, text)
    sent = got.message
    assert sent["Subject"] == "Re: ¿Dónde está mi pedido?"
    assert sent["In-Reply-To"] == f"<{first['provider_message_id']}>"
    assert sent["References"] == f"<{first['provider_message_id']}>"
    assert sent["From"].addresses[0].addr_spec == address
    assert sent["From"].addresses[0].display_name == "Soporte Acme"
    assert sent["To"].addresses[0].addr_spec == customer
    assert outbound["provider_message_id"] == sent["Message-ID"].strip("<>")
    reply_to = sent["Reply-To"].addresses[0].addr_spec
    local, tag, domain = addressing.split(reply_to)
    assert f"{local}@{domain}" == address and tag and tag.startswith("c")
    # The envelope sender is the reply's own bounce address (VERP).
    assert addressing.split(got.mail_from)[2] == domain
    assert (addressing.split(got.mail_from)[1] or "").startswith("b")
    plain = sent.get_body(("plain",))
    rich = sent.get_body(("html",))
    assert plain is not None and rich is not None
    assert plain.get_content().replace("\r\n", "\n").rstrip("\n") == text
    assert "&lt;b&gt;Gracias&lt;/b&gt; &amp; un saludo" in rich.get_content()
    assert "<b>Gracias" not in rich.get_content()

    answer_id = answer_by_mail(api, customer=customer, to=reply_to, outbound=outbound, first=first)
    second = wait_message(api, customer, lambda m: m["provider_message_id"] == answer_id)
    assert second["conversation_id"] == first["conversation_id"]
    assert second["text"] == "Perfecto, el camión ya ha llegado. ¡Muchísimas gracias!"
    assert "> Hola José, tu pedido llega mañana." in second["data"]["full_text"]
    assert second["data"]["in_reply_to"] == outbound["provider_message_id"]


def test_a_reply_joins_the_conversation_it_answers_not_the_latest_one(
    api: Api, relay: Relay
) -> None:
    channel = create_email_channel(api, relay)
    work, home = new_address("trabajo"), new_address("casa")
    older = first_mail(api, relay, channel, work)
    outbound, got = answered(api, relay, older, "¿Me confirma el número de pedido?")
    newer = first_mail(api, relay, channel, home)
    # One person, two addresses: after the merge they have two open conversations.
    survivor = contact_of(api, work)
    absorbed = contact_of(api, home)
    assert survivor and absorbed
    merged = api.post(
        f"/api/v1/contacts/{survivor['id']}/merge", json={"contact_id": absorbed["id"]}
    )
    assert merged.status_code == 200, merged.text
    assert newer["conversation_id"] != older["conversation_id"]
    reply_to = got.message["Reply-To"].addresses[0].addr_spec
    address = channel["config"]["address"]

    def conversation(message_id: str) -> str:
        found = wait_message(api, work, lambda m: m["provider_message_id"] == message_id)
        return str(found["conversation_id"])

    def write(text: str, to: str) -> str:
        message_id = new_id()
        raw = mail(
            "reply_without_threading_headers.eml",
            id=message_id,
            text=text,
            **{"from": work, "to": to},
        )
        deliver(api.server, raw, to=to)
        return message_id

    # Naming nothing, a message takes the usual rule: the latest open conversation.
    assert conversation(write("Otra pregunta distinta.", address)) == newer["conversation_id"]
    # Sent to the reply's tokenised Reply-To, without threading headers.
    assert conversation(write("El pedido es el 4711.", reply_to)) == older["conversation_id"]
    # The newer conversation is the latest again; a reply names the older by In-Reply-To.
    reply(api, newer["conversation_id"], "Ahora le respondo.")
    by_header = answer_by_mail(api, customer=work, to=address, outbound=outbound, first=older)
    assert conversation(by_header) == older["conversation_id"]


def test_a_reply_token_of_another_contacts_conversation_is_not_followed(
    api: Api, relay: Relay
) -> None:
    channel = create_email_channel(api, relay)
    victim, intruder = new_address("victima"), new_address("intruso")
    theirs = first_mail(api, relay, channel, victim)
    outbound, got = answered(api, relay, theirs, "Su factura está en camino.")
    reply_to = got.message["Reply-To"].addresses[0].addr_spec
    injected = answer_by_mail(api, customer=intruder, to=reply_to, outbound=outbound, first=theirs)
    landed = wait_message(api, intruder, lambda m: m["provider_message_id"] == injected)
    assert landed["conversation_id"] != theirs["conversation_id"]
    assert [m["id"] for m in conversation_messages(api, theirs["conversation_id"])] == [
        theirs["id"],
        outbound["id"],
    ]


# -- what arrives -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "name", "subject", "text"),
    [
        (
            "iso_8859_1_quoted_printable.eml",
            "José María Peña",
            "¿Dónde está mi pedido?",
            "Hola, pedí un camión de juguete para mi niño y aún no ha llegado.\n"
            "¿Me podéis decir cuándo llegará? Gracias, señores.",
        ),
        (
            "rfc2047_base64_utf8.eml",
            "Begoña Núñez",
            "Reclamación: cargo duplicado en la factura",
            "Buenos días:\n\nMe habéis cobrado dos veces la cuota de noviembre "
            "(¡49,90 € cada una!).\n\nUn saludo,\nBegoña",
        ),
        (
            "raw_8bit_latin1_headers.eml",
            "Iñaki Ibáñez",
            "Cambio de dirección de envío",
            "La nueva dirección es Calle Almirante Cervera 3º 2ª, Cádiz.",
        ),
    ],
)
def test_spanish_accents_survive_every_encoding(
    api: Api, relay: Relay, fixture: str, name: str, subject: str, text: str
) -> None:
    channel = create_email_channel(api, relay)
    customer = new_address()
    address = channel["config"]["address"]
    deliver(api.server, mail(fixture, **{"from": customer, "to": address}), to=address)
    message = wait_message(api, customer)
    assert message["text"] == text
    assert message["data"]["subject"] == subject
    contact = contact_of(api, customer)
    assert contact is not None and contact["name"] == name


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("auto_reply_out_of_office.eml", "auto-submitted"),
        ("auto_reply_subject_only.eml", "subject"),
        ("constructed/auto_reply_ooo.eml", "auto-submitted"),
    ],
)
def test_an_auto_reply_is_kept_and_flagged_so_nothing_answers_it(
    api: Api, relay: Relay, fixture: str, reason: str
) -> None:
    channel = create_email_channel(api, relay)
    customer = new_address()
    address = channel["config"]["address"]
    raw = mail(fixture, in_reply_to=new_id(), **{"from": customer, "to": address})
    if fixture.startswith("constructed/"):
        raw = raw.replace(b"jane@example.org", customer.encode())
    deliver(api.server, raw, to=address)
    message = wait_message(api, customer)
    assert message["data"]["auto_reply"] is True
    assert message["data"]["auto_reply_reason"] == reason
    assert not relay.to(customer)


@pytest.mark.parametrize("fixture", ["dsn_bounce_with_headers.eml", "dsn_bounce_verp_only.eml"])
def test_a_bounce_marks_the_reply_failed_with_its_diagnostic(
    api: Api, relay: Relay, fixture: str
) -> None:
    channel = create_email_channel(api, relay)
    customer = new_address("buzon-lleno")
    first = first_mail(api, relay, channel, customer)
    outbound, got = answered(api, relay, first, "Le escribimos sobre su pedido.")
    contacts_before = [c["id"] for c in api.get("/api/v1/contacts").json()["items"]]
    # With the original's headers the bounce names the reply; without, its VERP address does.
    to = channel["config"]["address"] if "with_headers" in fixture else got.mail_from
    bounce_id = new_id()
    raw = mail(
        fixture,
        id=bounce_id,
        to=to,
        original_id=outbound["provider_message_id"],
        recipient=customer,
    )
    deliver(api.server, raw, to=to, sender="")
    failed = wait_status(api, outbound, "failed")
    if "with_headers" in fixture:
        assert failed["error"].startswith("5.1.1 550 5.1.1")
        assert "User unknown in virtual mailbox table" in failed["error"]
    else:
        assert failed["error"] == "5.2.2 552 5.2.2 Mailbox full"
    assert inbound_statuses(api.server, bounce_id) == ["processed"]
    # A bounce is news about a reply, not a customer's message.
    assert [c["id"] for c in api.get("/api/v1/contacts").json()["items"]] == contacts_before
    assert len(conversation_messages(api, first["conversation_id"])) == 2


def test_the_same_message_delivered_twice_is_one_message(api: Api, relay: Relay) -> None:
    alias = new_address("ventas", "hub.example.test")
    channel = create_email_channel(api, relay, addresses=[alias])
    customer = new_address()
    address = channel["config"]["address"]
    message_id = new_id()
    raw = mail("rfc2047_base64_utf8.eml", id=message_id, **{"from": customer, "to": address})
    deliver(api.server, raw, to=address)
    deliver(api.server, raw, to=address)  # the sender retried
    deliver(api.server, raw, to=[address, alias])  # to two of the channel's addresses
    wait_message(api, customer)
    assert inbound_statuses(api.server, message_id) == ["processed"]
    assert [m["provider_message_id"] for m in messages_of(api, customer)] == [message_id]


def test_broken_mime_is_kept_with_what_could_be_read(api: Api, relay: Relay) -> None:
    channel = create_email_channel(api, relay)
    customer = new_address()
    address = channel["config"]["address"]
    deliver(api.server, mail("broken_mime.eml", **{"from": customer, "to": address}), to=address)
    message = wait_message(api, customer)
    assert message["text"] == "El adjunto no se abre. Lo envío otra vez."
    assert message["data"]["subject"] == "Adjunto roto =ZZ y más"
    assert "CloseBoundaryNotFoundDefect" in message["data"]["mime_defects"]
    # A raw Latin-1 file name, and NUL characters PostgreSQL would refuse, read all the same.
    assert [a["filename"] for a in message["attachments"]] == ["factura_año.pdf"]


def test_mail_without_a_sender_is_stored_as_unsupported_and_nothing_else(
    api: Api, relay: Relay
) -> None:
    channel = create_email_channel(api, relay)
    address = channel["config"]["address"]
    junk_id = new_id()
    deliver(api.server, mail("no_sender.eml", id=junk_id), to=address)
    wait_for(lambda: inbound_statuses(api.server, junk_id) == ["unsupported"], timeout=WAIT)
    assert api.get("/api/v1/contacts").json()["items"] == []
    # The listener goes on working.
    customer = new_address()
    deliver(api.server, mail("broken_mime.eml", **{"from": customer, "to": address}), to=address)
    wait_message(api, customer)


def test_an_address_no_channel_receives_for_is_refused_with_550(api: Api, relay: Relay) -> None:
    create_email_channel(api, relay)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        deliver(api.server, mail("no_sender.eml"), to=new_address("nadie", "hub.example.test"))
    assert next(iter(refused.value.recipients.values()))[0] == 550


def test_a_message_over_the_size_limit_is_refused_with_552(api: Api, relay: Relay) -> None:
    channel = create_email_channel(api, relay)
    address = channel["config"]["address"]
    customer = new_address()
    raw = mail("iso_8859_1_quoted_printable.eml", **{"from": customer, "to": address})
    big = raw + (b"x" * 70 + b"\r\n") * (MAX_MESSAGE_BYTES // 70)
    # Declared up front (SIZE, as smtplib does), and found out while reading the data.
    with pytest.raises(smtplib.SMTPSenderRefused) as declared:
        deliver(api.server, big, to=address)
    assert declared.value.smtp_code == 552
    with smtplib.SMTP("127.0.0.1", smtp_port(api.server), timeout=15) as smtp:
        smtp.ehlo()
        assert smtp.mail("sender@example.org")[0] == 250
        assert smtp.rcpt(address)[0] == 250
        assert smtp.data(big)[0] == 552
    assert contact_of(api, customer) is None


def test_mail_posted_to_the_webhook_url_is_refused(api: Api, relay: Relay) -> None:
    channel = create_email_channel(api, relay)
    raw = mail("iso_8859_1_quoted_printable.eml", **{"from": new_address(), "to": "x@y.z"})
    response = httpx.post(channel["webhook_url"], content=raw, timeout=15)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "email_has_no_webhook"


def test_attachments_are_kept_and_served_to_the_workspace(api: Api, relay: Relay) -> None:
    channel = create_email_channel(api, relay)
    customer = new_address()
    address = channel["config"]["address"]
    raw = mail("attachments.eml", **{"from": customer, "to": address})
    deliver(api.server, raw, to=address)
    message = wait_message(api, customer)
    assert message["text"] == "Os adjunto la factura y una foto del daño."
    files = {a["filename"]: a for a in message["attachments"]}
    assert sorted(files) == ["factura_año_2026.pdf", "foto.png"]
    assert files["foto.png"]["content_id"] == "foto-1@mail.example.org"
    expected = {
        part.get_filename(): part.get_content()
        for part in email.message_from_bytes(raw, policy=policy.default).walk()
        if part.get_filename()
    }
    for filename, attachment in files.items():
        assert attachment["status"] == "stored"
        served = api.get(f"/api/v1/attachments/{attachment['attachment_id']}")
        assert served.status_code == 200
        assert served.content == expected[filename]
        assert served.headers["content-type"].startswith(attachment["mime_type"])


def test_an_agents_file_goes_out_attached_to_the_reply(api: Api, relay: Relay) -> None:
    channel = create_email_channel(api, relay)
    customer = new_address()
    first = first_mail(api, relay, channel, customer)
    content = b"%PDF-1.4\npresupuesto\n%%EOF\n"
    upload = api.post(
        "/api/v1/attachments",
        params={"filename": "presupuesto.pdf"},
        content=content,
        headers={"Content-Type": "application/pdf"},
    )
    assert upload.status_code == 201, upload.text
    reply(
        api,
        first["conversation_id"],
        "Le adjunto el presupuesto.",
        attachment_ids=[upload.json()["id"]],
    )
    sent = captured(relay, customer).message
    files = [
        (p.get_filename(), p.get_content_type(), p.get_content()) for p in sent.iter_attachments()
    ]
    assert files == [("presupuesto.pdf", "application/pdf", content)]


def test_a_relay_refusal_fails_the_reply_and_a_deferral_is_retried(api: Api, relay: Relay) -> None:
    channel = create_email_channel(api, relay)
    refused, deferred = new_address("rechazado"), new_address("diferido")
    relay.refuse.add(refused)
    relay.defer_once.add(deferred)
    for customer in (refused, deferred):
        first_mail(api, relay, channel, customer)
    lost = reply(api, wait_message(api, refused)["conversation_id"], "¿Sigue ahí?")
    failed = wait_status(api, lost, "failed")
    assert failed["error"].startswith("SMTP 550")
    assert "User unknown" in failed["error"]
    late = reply(api, wait_message(api, deferred)["conversation_id"], "¿Sigue ahí?")
    wait_status(api, late, "sent")
    assert len(relay.to(deferred)) == 1


def test_a_subject_with_encoded_line_breaks_is_answered_on_one_line(api: Api, relay: Relay) -> None:
    channel = create_email_channel(api, relay)
    customer, address = new_address(), channel["config"]["address"]
    raw = mail("iso_8859_1_quoted_printable.eml", **{"from": customer, "to": address})
    # An encoded word may carry CR LF (and U+2028): decoded, they must not end the header.
    crafted = b"Subject: =?utf-8?q?Pedido=0D=0ABcc:_intruso@example.net=E2=80=A8X-Evil:_1?="
    raw = raw.replace(b"Subject: =?ISO-8859-1?Q?=BFD=F3nde_est=E1_mi_pedido=3F?=", crafted)
    deliver(api.server, raw, to=address)
    first = wait_message(api, customer)
    sent, got = answered(api, relay, first, "Lo miramos ahora mismo.")
    assert sent["status"] == "sent"
    assert got.message["Subject"] == "Re: Pedido Bcc: intruso@example.net X-Evil: 1"
    assert got.message["Bcc"] is None and got.message["X-Evil"] is None
    assert got.rcpt_tos == [customer]


def test_channel_settings_are_checked_and_passwords_never_shown(api: Api, relay: Relay) -> None:
    def create(config: dict[str, Any]) -> httpx.Response:
        return api.post("/api/v1/channels", json={"type": "email", "name": "x", "config": config})

    missing = create({"address": new_address()})
    assert missing.status_code == 422
    assert "smtp_host" in missing.json()["error"]["message"]
    bad = create({"address": "no-es-un-correo", "smtp_host": "smtp.example.org"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_config"
    imap = create(
        {"address": new_address(), "smtp_host": "smtp.example.org", "imap_host": "imap.x"}
    )
    assert imap.status_code == 422
    spanish = api.post(
        "/api/v1/channels",
        json={"type": "email", "name": "x", "config": {"address": "nope", "smtp_host": "h"}},
        headers={"Accept-Language": "es"},
    )
    assert "dirección de correo" in spanish.json()["error"]["message"]
    channel = create_email_channel(api, relay, smtp_username="acme", smtp_password="s3creta")
    assert channel["secrets"] == {"smtp_password": "s3creta"}
    shown = api.get(f"/api/v1/channels/{channel['id']}").json()
    assert "s3creta" not in str(shown)
    assert shown["config"]["smtp_username"] == "acme"


# -- IMAP ---------------------------------------------------------------------------------------


@dataclass
class Dovecot:
    """A throwaway Dovecot IMAP server on a free port, with a Maildir per user."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    password: str = "secret"

    def connect(self, user: str) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        conn.login(user, self.password)
        return conn

    def append(self, user: str, raw: bytes, *, seen: bool = False) -> None:
        conn = self.connect(user)
        try:
            status, _data = conn.append("INBOX", r"(\Seen)" if seen else None, None, raw)
            assert status == "OK"
        finally:
            conn.logout()

    def unseen(self, user: str) -> int:
        conn = self.connect(user)
        try:
            conn.select("INBOX")
            _status, data = conn.uid("SEARCH", "UNSEEN")
            return len(data[0].split()) if data and data[0] else 0
        finally:
            conn.logout()

    def count(self, user: str) -> int:
        conn = self.connect(user)
        try:
            _status, data = conn.select("INBOX")
            return int(data[0] or 0)
        finally:
            conn.logout()


DOVECOT_CONF = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
default_internal_group = dovecot
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
first_valid_uid = 100
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
"""
IMAP_USERS = ("sqlite@example.test", "postgres@example.test")


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    """Dovecot from Debian's dovecot-imapd, configured as in shared/reference/email-e2e."""
    required = os.environ.get("CI") == "true" or REQUIRE_PG
    binary = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
    )
    problem = None
    if binary is None:
        problem = "DOVECOT IS NOT INSTALLED (apt-get install dovecot-imapd): IMAP test not run"
    elif os.geteuid() != 0:
        problem = "DOVECOT NEEDS ROOT to switch to its mail user: IMAP test not run"
    if problem:
        if required:
            pytest.fail(problem)
        pytest.skip(problem)
    import pwd

    mail_user = pwd.getpwnam("nobody")
    root = Path(tempfile.mkdtemp(prefix="hilo-dovecot-"))
    root.chmod(0o755)
    for folder in ("run", "state", "mail"):
        (root / folder).mkdir()
    os.chown(root / "mail", mail_user.pw_uid, mail_user.pw_gid)
    (root / "users").write_text("".join(f"{u}:{{PLAIN}}secret\n" for u in IMAP_USERS))
    port = free_port()
    (root / "dovecot.conf").write_text(
        DOVECOT_CONF.format(root=root, port=port, uid=mail_user.pw_uid, gid=mail_user.pw_gid)
    )
    assert binary is not None
    proc = subprocess.Popen([binary, "-F", "-c", str(root / "dovecot.conf")])

    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return proc.poll() is not None  # stop waiting if it died

    wait_for(listening, timeout=20, message="dovecot listening")
    assert proc.poll() is None, (root / "dovecot.log").read_text()
    yield Dovecot(root=root, port=port, proc=proc)
    proc.terminate()
    proc.wait(timeout=15)
    shutil.rmtree(root, ignore_errors=True)


def test_a_message_in_the_imap_mailbox_lands_once_however_often_it_is_polled(
    api: Api, relay: Relay, dovecot: Dovecot
) -> None:
    user = f"{api.server.backend}@example.test"
    old_sender, customer = new_address("antiguo"), new_address()
    # Already read before Hilo was connected: the mailbox's past, not news.
    dovecot.append(
        user, mail("rfc2047_base64_utf8.eml", **{"from": old_sender, "to": user}), seen=True
    )
    create_email_channel(
        api,
        relay,
        imap_host="127.0.0.1",
        imap_port=dovecot.port,
        imap_username=user,
        imap_password=dovecot.password,
        imap_tls=False,
        imap_poll_seconds=1,
    )
    message_id = new_id()
    raw = mail("iso_8859_1_quoted_printable.eml", id=message_id, **{"from": customer, "to": user})
    dovecot.append(user, raw)
    first = wait_message(api, customer)
    assert first["provider_message_id"] == message_id
    assert first["data"]["source"] == "imap"
    assert first["text"].startswith("Hola, pedí un camión")
    # Stored, then marked read on the server.
    wait_for(lambda: dovecot.unseen(user) == 0, timeout=WAIT, message="marked seen")
    # The same message lands in the mailbox again (a second copy, a new UID) and the
    # mailbox is polled again and again: still one message.
    dovecot.append(user, raw)
    wait_for(lambda: dovecot.unseen(user) == 0, timeout=WAIT, message="copy read")
    later_id = new_id()
    later = mail("raw_8bit_latin1_headers.eml", id=later_id, **{"from": customer, "to": user})
    dovecot.append(user, later)
    wait_message(api, customer, lambda m: m["provider_message_id"] == later_id)
    assert [m["provider_message_id"] for m in messages_of(api, customer)] == [message_id, later_id]
    assert inbound_statuses(api.server, message_id) == ["processed"]
    assert contact_of(api, old_sender) is None


# -- pieces -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("gmail.eml", "Hello"),
        ("apple_mail.eml", "Hello"),
        ("hotmail.eml", "Hello"),
        ("outlook.eml", "Hello"),
        ("yahoo.eml", "Hello"),
        ("iphone.eml", "Hello\n\nSent from my iPhone"),
        # Bottom-posting: nothing above the quote to keep, so nothing is cut.
        ("thunderbird.eml", "On 04/02/2012 06:26 PM, Megan One wrote:\n> Hi \nHello"),
    ],
)
def test_quoted_history_of_real_clients_replies_is_stripped_for_display(
    fixture: str, expected: str
) -> None:
    message = mime.read((FIXTURES / "talon" / fixture).read_bytes())
    assert mime.strip_quoted(mime.bodies(message).text) == expected


def test_reply_tokens_are_signed_and_bound_to_their_channel() -> None:
    channel, other, conversation = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    token = addressing.make_token(addressing.CONVERSATION, channel, conversation)
    assert addressing.read_token(token, channel) == addressing.Token("c", conversation)
    assert addressing.read_token(token.upper(), channel) == addressing.Token("c", conversation)
    assert addressing.read_token(token, other) is None
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert addressing.read_token(forged, channel) is None
    assert addressing.read_token("c7.3f9a1b2c", channel) is None
    address = addressing.with_tag("soporte@hub.example.test", token)
    assert address is not None and len(address.partition("@")[0]) <= 64
    assert addressing.with_tag("x" * 40 + "@hub.example.test", token) is None


def test_reply_subjects_do_not_pile_up_prefixes() -> None:
    assert mime.reply_subject("¿Dónde está mi pedido?") == "Re: ¿Dónde está mi pedido?"
    assert mime.reply_subject("RE: Factura") == "RE: Factura"
    assert mime.reply_subject("AW: Re: [#7] Pedido") == "AW: Re: [#7] Pedido"
