"""``hilo demo``: fills a fresh database, serves it, refuses one with data, resets on request."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from hilo.demo.service import STORY_PHONE
from tests.conftest import Api, Server, dispose_server, make_server

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
    """One database per backend, filled once by ``hilo demo --no-serve``."""
    server = make_server(request.param, tmp_path_factory.mktemp(f"demo-{request.param}"))
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


def test_demo_prints_login_token_and_url_quickly(demo: Demo) -> None:
    assert "carmen.ruiz@rutarent.example" in demo.stdout
    assert "password: hilo-demo" in demo.stdout
    assert re.search(r"^URL: +http://127\.0\.0\.1:\d+", demo.stdout, re.MULTILINE)
    # The whole command, migrations and interpreter start included.
    assert demo.seconds < 30, demo.stdout


def test_demo_api_pages_through_hundreds_of_contacts(api: Api) -> None:
    contacts: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        body = ok(api, api.get("/api/v1/contacts", params=params))
        contacts.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
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


def test_demo_story_customer_sees_sms_and_whatsapp_in_one_conversation(
    api: Api,
) -> None:
    found = ok(api, api.get("/api/v1/contacts", params={"phone": STORY_PHONE}))["items"]
    assert len(found) == 1
    contact = found[0]
    timeline = api.get(f"/api/v1/contacts/{contact['id']}/timeline", params={"limit": 200})
    messages = ok(api, timeline)["items"]
    channels_by_conversation: dict[str, set[str]] = {}
    for m in messages:
        if m["channel_id"]:
            channels_by_conversation.setdefault(m["conversation_id"], set()).add(m["channel_id"])
    conversation_id, channel_ids = max(channels_by_conversation.items(), key=lambda kv: len(kv[1]))
    assert len(channel_ids) >= 2
    names = {c["id"]: c["name"] for c in ok(api, api.get("/api/v1/channels"))["items"]}
    assert {names[c] for c in channel_ids} >= {"SMS (vía app)", "WhatsApp (vía app)"}
    kinds = {m["kind"] for m in messages}
    assert {"inbound", "outbound", "note", "bot"} <= kinds
    trail = api.get(f"/api/v1/conversations/{conversation_id}/events", params={"limit": 200})
    types = [e["type"] for e in ok(api, trail)["items"]]
    for expected in (
        "conversation.created",
        "message.received",
        "message.queued",
        "message.delivered",
        "note.created",
        "conversation.assigned",
        "conversation.resolved",
        "conversation.reopened",
        "conversation.channel_switched",
    ):
        assert expected in types, expected
    conversation = ok(api, api.get(f"/api/v1/conversations/{conversation_id}"))
    assert conversation["status"] == "resolved"


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
