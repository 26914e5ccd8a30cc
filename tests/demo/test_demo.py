"""``hilo demo``: fills a fresh database, serves it, refuses one with data, resets on request.

The demo's channels are real channel types with made-up credentials whose providers are a
closed local port; its rows are compared with what the real adapters write when a provider
posts to the same demo channels (a Twilio voicemail, an e-mail through Hilo's SMTP listener).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from hilo.demo.service import (
    OFFLINE_ADDRESS,
    OFFLINE_URL,
    STORY_PHONE,
    SUPPORT_ADDRESS,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
)
from tests.channels.test_email import deliver
from tests.channels.test_sms import new_sid
from tests.channels.test_voice import Voice, call_until
from tests.conftest import Api, Server, dispose_server, free_port, make_server, wait_for

TOKEN = re.compile(r"^API token: (hilo_[0-9a-f]{8}_\S+)$", re.MULTILINE)


@dataclass
class Demo:
    """A database filled by ``hilo demo``, and a server configured for it (not started)."""

    server: Server
    token: str
    stdout: str
    seconds: float


def run_demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hilo.cli", "demo", "--no-serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def snapshot(db_url: str) -> dict[str, Any]:
    """Row counts of every table, plus a digest of the contacts' names and the messages."""
    from hilo.db import Base, Database
    from hilo.models import Contact, Message

    async def go() -> dict[str, Any]:
        db = Database(db_url, pool_size=1)
        try:
            async with db.sessionmaker() as session:
                result: dict[str, Any] = {}
                for table in Base.metadata.sorted_tables:
                    count = await session.scalar(select(func.count()).select_from(table))
                    result[table.name] = count
                names = sorted((await session.scalars(select(Contact.name))).all())
                texts = sorted((await session.scalars(select(Message.text))).all())
                digest = hashlib.sha256("\n".join(names + texts).encode()).hexdigest()
                result["content"] = digest
                return result
        finally:
            await db.dispose()

    return asyncio.run(go())


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Demo]:
    """One database per backend, filled once by ``hilo demo --no-serve``.

    Served as ``hilo demo`` serves it (a reply gives up at its first failure), with Hilo's
    SMTP listener on for the e-mail channel.
    """
    server = make_server(
        request.param,
        tmp_path_factory.mktemp(f"demo-{request.param}"),
        extra_env={
            "HILO_OUTBOUND_GIVE_UP_HOURS": "0",
            "HILO_SMTP_LISTEN_PORT": str(free_port()),
        },
    )
    try:
        started = time.monotonic()
        result = run_demo(server.env)
        seconds = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        match = TOKEN.search(result.stdout)
        assert match, result.stdout
        yield Demo(server, match.group(1), result.stdout, seconds)
    finally:
        dispose_server(server)


@pytest.fixture
def api(demo: Demo) -> Iterator[Api]:
    """The demo database served, with the printed token."""
    demo.server.start()
    client = Api(
        base_url=demo.server.base_url,
        headers={"Authorization": f"Bearer {demo.token}"},
        timeout=30,
    )
    client.slug, client.server = "demo", demo.server
    try:
        yield client
    finally:
        client.close()
        demo.server.stop()


def ok(api: Api, response: httpx.Response) -> Any:
    """The JSON of a 200 response; otherwise fail with the server's log."""
    assert response.status_code == 200, f"{response.text}\n{api.server.logs()[-4000:]}"
    return response.json()


def channels_of(api: Api) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in ok(api, api.get("/api/v1/channels"))["items"]}


def story_contact(api: Api) -> dict[str, Any]:
    found = ok(api, api.get("/api/v1/contacts", params={"phone": STORY_PHONE}))["items"]
    assert len(found) == 1
    contact: dict[str, Any] = found[0]
    return contact


def trail(api: Api, conversation_id: str) -> list[dict[str, Any]]:
    page = api.get(f"/api/v1/conversations/{conversation_id}/events", params={"limit": 200})
    items: list[dict[str, Any]] = ok(api, page)["items"]
    return items


def message_of(api: Api, conversation_id: str, message_id: str) -> dict[str, Any]:
    page = api.get(f"/api/v1/conversations/{conversation_id}/messages", params={"limit": 200})
    return next(m for m in ok(api, page)["items"] if m["id"] == message_id)


def demo_message(db_url: str, channel_type: str, *, where: str) -> tuple[str, str]:
    """(conversation id, message id) of a customer message the demo wrote on a channel type."""
    from hilo.db import Database
    from hilo.models import Channel, Message

    async def go() -> tuple[str, str]:
        db = Database(db_url, pool_size=1)
        try:
            async with db.sessionmaker() as session:
                rows = await session.execute(
                    select(Message.conversation_id, Message.id, Message.data)
                    .join(Channel, Channel.id == Message.channel_id)
                    .where(Channel.type == channel_type, Message.kind == "inbound")
                    .order_by(Message.created_at)
                )
                for conversation_id, message_id, data in rows:
                    if where == "fresh" and data.get("in_reply_to") is None:
                        return str(conversation_id), str(message_id)
                    if where == "any":
                        return str(conversation_id), str(message_id)
        finally:
            await db.dispose()
        raise AssertionError(f"no demo message on {channel_type}")

    return asyncio.run(go())


def keys_of_events(events: list[dict[str, Any]], message_id: str) -> list[tuple[str, Any]]:
    """The events about one message: their types and the names (or values) of their data."""
    shape: list[tuple[str, Any]] = []
    for e in events:
        if e["message_id"] != message_id:
            continue
        data = e["data"]
        shape.append((e["type"], data.get("update") or sorted(data)))
    return shape


def test_demo_prints_login_token_url_and_what_the_channels_can_do_quickly(demo: Demo) -> None:
    assert "carmen.ruiz@rutarent.example" in demo.stdout
    assert "password: hilo-demo" in demo.stdout
    assert re.search(r"^URL: +http://127\.0\.0\.1:\d+", demo.stdout, re.MULTILINE)
    # Honest about what is made up, in both languages.
    assert re.search(r"^Channels: .*127\.0\.0\.1:9.*not delivered", demo.stdout, re.MULTILINE)
    assert re.search(r"^Canales: .*127\.0\.0\.1:9.*no entregada", demo.stdout, re.MULTILINE)
    assert "Hilo has no bot engine" in demo.stdout
    assert "Hilo aún no tiene bot" in demo.stdout
    # The whole command, migrations and interpreter start included.
    assert demo.seconds < 45, demo.stdout


def all_contacts(api: Api) -> list[dict[str, Any]]:
    """Every contact, page by page."""
    contacts: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        body = ok(api, api.get("/api/v1/contacts", params=params))
        contacts.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return contacts


def test_demo_api_pages_through_hundreds_of_contacts(api: Api) -> None:
    contacts = all_contacts(api)
    assert len(contacts) >= 300
    assert len({c["id"] for c in contacts}) == len(contacts)
    assert all(c["identities"] for c in contacts)
    phones = [i["value"] for c in contacts for i in c["identities"] if i["kind"] == "phone"]
    assert all(re.fullmatch(r"\+[1-9]\d{7,14}", p) for p in phones)
    for prefix in ("+34", "+52", "+549", "+1"):
        assert any(p.startswith(prefix) for p in phones), prefix
    names = " ".join(c["name"] for c in contacts)
    assert re.search(r"[áéíóúñ]", names), "Spanish names"
    assert any(n in names for n in ("Smith", "Johnson", "Williams", "Brown", "Taylor")), names


def test_demo_channels_are_real_types_whose_providers_are_a_closed_local_port(api: Api) -> None:
    channels = list(channels_of(api).values())
    assert {(c["type"], c["provider"]) for c in channels} >= {
        ("whatsapp", "meta"),
        ("sms", "twilio"),
        ("voice", "twilio"),
        ("email", "smtp"),
        ("webchat", "hilo"),
        ("api", "hilo"),
    }
    for channel in channels:
        config = channel["config"]
        if "api_base_url" in config:
            assert config["api_base_url"] == OFFLINE_URL, channel["name"]
        if "callback_url" in config:
            assert config["callback_url"].startswith(OFFLINE_URL + "/"), channel["name"]
        if channel["type"] == "email":
            assert f"{config['smtp_host']}:{config['smtp_port']}" == OFFLINE_ADDRESS
        if channel["type"] == "voice":
            assert config["answer"] == "voicemail"
        # Nothing is written with a secret in plain sight.
        assert "auth_token" not in config and "access_token" not in config


def test_demo_identities_are_those_the_channels_vouch_for(api: Api) -> None:
    channels = channels_of(api)
    webchat = next(c["id"] for c in channels.values() if c["type"] == "webchat")
    app = next(c["id"] for c in channels.values() if c["type"] == "api")
    identities = [i for c in all_contacts(api) for i in c["identities"]]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for identity in identities:
        by_kind.setdefault(identity["kind"], []).append(identity)
    # WhatsApp ids and phones are workspace-wide; a WhatsApp id is the phone's digits.
    assert by_kind["whatsapp"] and all(i["channel_id"] is None for i in by_kind["whatsapp"])
    assert all(i["value"].isdigit() and i["verified"] for i in by_kind["whatsapp"])
    assert all(i["channel_id"] is None for i in by_kind["phone"] + by_kind["email"])
    assert any(i["verified"] for i in by_kind["phone"])
    assert any(i["verified"] for i in by_kind["email"])
    # A web visitor's id means something only to its widget; anonymous ones are not vouched.
    visitors = by_kind["webchat"]
    assert visitors and all(i["channel_id"] == webchat for i in visitors)
    anonymous = [i for i in visitors if i["value"].startswith("v:")]
    signed_in = [i for i in visitors if i["value"].startswith("u:")]
    assert anonymous and not any(i["verified"] for i in anonymous)
    assert signed_in and all(i["verified"] for i in signed_in)
    assert all(i["channel_id"] == app for i in by_kind["api"])
    # Marta is known by her phone (SMS) and her WhatsApp id, one contact.
    marta = {(i["kind"], i["value"], i["verified"]) for i in story_contact(api)["identities"]}
    assert {("phone", STORY_PHONE, True), ("whatsapp", STORY_PHONE[1:], True)} <= marta


def test_demo_story_goes_sms_call_sms_whatsapp_in_one_conversation(api: Api) -> None:
    contact = story_contact(api)
    timeline = api.get(f"/api/v1/contacts/{contact['id']}/timeline", params={"limit": 200})
    messages = ok(api, timeline)["items"]
    assert len({m["conversation_id"] for m in messages}) == 1
    conversation_id = messages[0]["conversation_id"]
    types = {c["id"]: c["type"] for c in channels_of(api).values()}
    path: list[str] = []
    for m in messages:
        kind = types.get(m["channel_id"]) if m["channel_id"] else None
        if kind and (not path or path[-1] != kind):
            path.append(kind)
    assert path == ["sms", "voice", "sms", "whatsapp"]
    assert {m["kind"] for m in messages} == {"inbound", "outbound", "note", "call"}
    [call] = [m for m in messages if m["kind"] == "call"]
    assert call["data"]["call"]["direction"] == "outbound" and call["data"]["call"]["logged"]
    assert "Marta:" in call["text"]
    senders = {m["sender_type"] for m in messages if m["kind"] == "outbound"}
    assert senders == {"user", "bot", "system"}  # agents, the bot, the survey
    events = trail(api, conversation_id)
    event_types = [e["type"] for e in events]
    for expected in (
        "conversation.created",
        "message.received",
        "bot.replied",
        "bot.handoff",
        "message.queued",
        "message.delivered",
        "note.created",
        "conversation.assigned",
        "call.logged",
        "survey.sent",
        "survey.answered",
        "conversation.resolved",
        "conversation.reopened",
        "conversation.channel_switched",
    ):
        assert expected in event_types, expected
    [handoff] = [e for e in events if e["type"] == "bot.handoff"]
    summary = message_of(api, conversation_id, handoff["data"]["summary_message_id"])
    assert summary["kind"] == "note" and summary["sender_type"] == "bot"
    [answer] = [e for e in events if e["type"] == "survey.answered"]
    assert answer["data"] == {"kind": "csat", "score": 5}
    conversation = ok(api, api.get(f"/api/v1/conversations/{conversation_id}"))
    assert conversation["status"] == "resolved"


def test_demo_reply_fails_at_once_with_the_connection_error_on_the_message(api: Api) -> None:
    contact = story_contact(api)
    listed = api.get("/api/v1/conversations", params={"contact_id": contact["id"]})
    conversation_id = ok(api, listed)["items"][0]["id"]
    sms = next(c for c in channels_of(api).values() if c["type"] == "sms")
    queued = api.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"text": "Prueba desde la demo", "channel_id": sms["id"]},
    )
    assert queued.status_code == 202, queued.text

    def failed() -> dict[str, Any] | None:
        row = message_of(api, conversation_id, queued.json()["id"])
        return row if row["status"] == "failed" else None

    row: dict[str, Any] = wait_for(failed, timeout=20, message="the reply marked failed")
    assert "ConnectError" in row["error"], row["error"]
    # The WhatsApp window closed days ago: refused before anything is queued, as for real.
    whatsapp = api.post(
        f"/api/v1/conversations/{conversation_id}/messages", json={"text": "¿Sigue ahí?"}
    )
    assert whatsapp.status_code == 409, whatsapp.text


def test_demo_voicemail_has_the_shape_twilio_callbacks_give_on_the_same_channel(
    api: Api, demo: Demo
) -> None:
    channel = next(c for c in channels_of(api).values() if c["type"] == "voice")
    conversation_id, message_id = demo_message(demo.server.db_url, "voice", where="any")
    ours = message_of(api, conversation_id, message_id)
    ours_events = keys_of_events(trail(api, conversation_id), message_id)

    voice = Voice(
        api, channel, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, channel["config"]["phone_number"]
    )
    call = voice.incoming("+34699" + str(uuid.uuid4().int)[:6])
    words = "Hola, soy Lucía. Se me ha pinchado una rueda en la A-4. Llámenme, por favor."
    recording_sid = new_sid("RE")
    # Twilio's callbacks in the order the demo writes them, each awaited before the next.
    steps = (
        (call, lambda r: True),
        (voice.recording(call, recording_sid), lambda r: bool(r["attachments"])),
        (voice.completed(call), lambda r: r["data"]["call"].get("duration")),
        (voice.transcription(call, recording_sid, words), lambda r: r["text"] == words),
    )
    real: dict[str, Any] = {}
    for params, ready in steps:
        assert voice.post(params).status_code == 200
        real = call_until(api, call["CallSid"], ready, "the callback applied")
    real_events = keys_of_events(trail(api, real["conversation_id"]), real["id"])

    assert (real["kind"], real["status"], real["sender_type"]) == (
        ours["kind"],
        ours["status"],
        ours["sender_type"],
    )
    assert sorted(real["data"]["call"]) == sorted(ours["data"]["call"])
    assert {k: v for k, v in real["data"]["call"].items() if k in ("direction", "answer")} == {
        k: v for k, v in ours["data"]["call"].items() if k in ("direction", "answer")
    }
    assert [sorted(a) for a in real["attachments"]] == [sorted(a) for a in ours["attachments"]]
    assert bool(real["text"]) and bool(ours["text"])
    assert real_events == ours_events


def test_demo_email_has_the_shape_of_mail_through_the_smtp_listener(api: Api, demo: Demo) -> None:
    conversation_id, message_id = demo_message(demo.server.db_url, "email", where="fresh")
    ours = message_of(api, conversation_id, message_id)
    ours_events = keys_of_events(trail(api, conversation_id), message_id)

    sender = f"lucia.{uuid.uuid4().hex[:8]}@example.org"
    mail = EmailMessage()
    mail["From"] = f"Lucía Prueba <{sender}>"
    mail["To"] = f"Ruta Rent a Car <{SUPPORT_ADDRESS}>"
    mail["Subject"] = "Consulta sobre mi reserva R-12345"
    mail["Message-ID"] = make_msgid(domain="example.org")
    mail.set_content("Hola, ¿puedo recoger el coche una hora antes? Gracias.")
    deliver(api.server, mail.as_bytes(), to=SUPPORT_ADDRESS, sender=sender)

    def landed() -> dict[str, Any] | None:
        found = api.get("/api/v1/contacts", params={"email": sender}).json()["items"]
        if not found:
            return None
        items = api.get(f"/api/v1/contacts/{found[0]['id']}/timeline").json()["items"]
        return items[0] if items else None

    real: dict[str, Any] = wait_for(landed, timeout=20, message="the e-mail landed")
    real_events = keys_of_events(trail(api, real["conversation_id"]), real["id"])
    assert sorted(real["data"]) == sorted(ours["data"])
    assert ours["data"]["subject"] and ours["data"]["to"] == [SUPPORT_ADDRESS]
    assert (real["kind"], real["status"], real["attachments"]) == (
        ours["kind"],
        ours["status"],
        ours["attachments"],
    )
    assert real_events == ours_events


def test_demo_inbox_has_every_status(api: Api) -> None:
    for status in ("open", "pending", "snoozed", "resolved"):
        page = api.get("/api/v1/conversations", params={"status": status, "limit": 5})
        assert ok(api, page)["items"], status


def test_demo_trail_verifies(demo: Demo) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hilo.cli", "audit", "verify", "--workspace", "demo"],
        env=demo.server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_demo_refuses_a_database_with_data_and_changes_nothing(demo: Demo) -> None:
    before = snapshot(demo.server.db_url)
    result = run_demo(demo.server.env)
    assert result.returncode == 2
    assert "--reset" in result.stderr
    assert "the database already holds data" in result.stderr
    assert "la base de datos ya contiene datos" in result.stderr
    assert "API token" not in result.stdout
    assert snapshot(demo.server.db_url) == before


def reset_twice(demo: Demo, seed: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two ``--reset --seed`` runs within one clock hour (the data is anchored on the hour)."""
    for _attempt in range(3):
        hour = time.gmtime().tm_hour
        snapshots = []
        for _run in range(2):
            result = run_demo(demo.server.env, "--reset", "--seed", seed)
            assert result.returncode == 0, result.stderr
            match = TOKEN.search(result.stdout)
            assert match and match.group(1) != demo.token
            demo.token = match.group(1)
            snapshots.append(snapshot(demo.server.db_url))
        if time.gmtime().tm_hour == hour:
            return snapshots[0], snapshots[1]
    raise AssertionError("could not run twice within one hour")


def test_demo_reset_starts_over_and_the_seed_decides_the_data(demo: Demo) -> None:
    one, two = reset_twice(demo, "7")
    assert one["workspaces"] == two["workspaces"] == 1
    assert two == one
    other = run_demo(demo.server.env, "--reset", "--seed", "8")
    assert other.returncode == 0, other.stderr
    assert snapshot(demo.server.db_url)["content"] != one["content"]
    demo.token = TOKEN.search(other.stdout).group(1)  # type: ignore[union-attr]


def test_demo_migrates_an_empty_embedded_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HILO_DATABASE_URL"}
    env["HILO_DATA_DIR"] = str(tmp_path / "data")
    result = run_demo(env)
    assert result.returncode == 0, result.stderr
    assert TOKEN.search(result.stdout)
    assert (tmp_path / "data" / "hilo.db").exists()
