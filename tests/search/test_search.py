"""Searching message text and contacts, and reading the newest messages first, on SQLite and
PostgreSQL (the indexes of migration 0004_bench_indexes: FTS5 / text search and trigrams)."""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    Api,
    create_workspace_token,
    dispose_server,
    drop_pg_database,
    make_server,
    migrated_database,
    wait_for,
)
from tests.core.test_api_channel import create_channel, message, message_visible
from tests.helpers import post_api_message


def deliver(api: Api, channel: dict[str, Any], sender: str, text: str, **who: Any) -> str:
    """Post one customer message through the API channel; its id once it is processed."""
    response = post_api_message(api, channel["id"], channel["secret"], message(sender, text, **who))
    assert response.status_code in (200, 202), response.text
    message_id: str = response.json()["message_id"]
    wait_for(lambda: message_visible(api, message_id), message=f"message {message_id}")
    return message_id


def search(api: Api, q: str, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/api/v1/search/messages", params={"q": q, **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_message_search_finds_every_word_newest_first_in_spanish_and_english(api: Api) -> None:
    channel = create_channel(api)
    first = deliver(api, channel, "u-1", "Hola, la reserva R-123456 no aparece en la app")
    second = deliver(api, channel, "u-2", "My booking R-123456 was charged twice")
    deliver(api, channel, "u-3", "Necesito la factura de marzo")
    # Words in any case and order; every one must be in the message; newest first.
    assert [m["id"] for m in search(api, "r-123456")] == [second, first]
    assert [m["id"] for m in search(api, "APARECE reserva")] == [first]
    assert [m["id"] for m in search(api, "Booking twice")] == [second]
    assert search(api, "reserva booking") == []
    # Paging with the cursor walks on to older matches.
    page = api.get("/api/v1/search/messages", params={"q": "123456", "limit": 1}).json()
    assert [m["id"] for m in page["items"]] == [second]
    older = api.get(
        "/api/v1/search/messages", params={"q": "123456", "cursor": page["next_cursor"]}
    ).json()
    assert [m["id"] for m in older["items"]] == [first]


def test_message_search_treats_query_syntax_as_text_and_needs_a_word(api: Api) -> None:
    channel = create_channel(api)
    found = deliver(api, channel, "u-1", 'Pregunta "urgente": NEAR la oficina OR el aeropuerto')
    assert [m["id"] for m in search(api, 'urgente" OR "x')] == []
    assert [m["id"] for m in search(api, 'NEAR("urgente"')] == [found]
    empty = api.get("/api/v1/search/messages", params={"q": "¿?* -"})
    assert empty.status_code == 422
    assert empty.json()["error"]["code"] == "empty_search"
    spanish = api.get(
        "/api/v1/search/messages", params={"q": "***"}, headers={"Accept-Language": "es"}
    )
    assert spanish.json()["error"]["message"] == "Escribe al menos una palabra para buscar."


def test_contact_search_matches_any_part_of_name_phone_or_email(api: Api) -> None:
    channel = create_channel(api)
    deliver(
        api,
        channel,
        "u-1",
        "hola",
        name="Beatriz Calvo Herrera",
        phone="+34611223344",
        email="bea.calvo@example.com",
    )
    deliver(api, channel, "u-2", "hello", name="Tom Bennett", email="tom@example.org")

    def names(q: str) -> list[str]:
        response = api.get("/api/v1/contacts", params={"q": q})
        assert response.status_code == 200, response.text
        return [c["name"] for c in response.json()["items"]]

    assert names("calvo herr") == ["Beatriz Calvo Herrera"]
    assert names("CALVO") == ["Beatriz Calvo Herrera"]
    assert names("1122334") == ["Beatriz Calvo Herrera"]
    assert names("example.org") == ["Tom Bennett"]
    assert sorted(names("example")) == ["Beatriz Calvo Herrera", "Tom Bennett"]
    # Shorter than a trigram, or with LIKE's wildcards: the same answers, without the index.
    assert names("tt") == ["Tom Bennett"]
    assert names("bea_calvo") == []
    assert names("%") == []
    # Phone and e-mail filters go straight to the one identity.
    by_phone = api.get("/api/v1/contacts", params={"phone": "611 22 33 44"}).json()["items"]
    assert [c["name"] for c in by_phone] == ["Beatriz Calvo Herrera"]
    by_email = api.get("/api/v1/contacts", params={"email": "Tom@Example.org"}).json()["items"]
    assert [c["name"] for c in by_email] == ["Tom Bennett"]


def test_timeline_and_conversation_read_newest_first_page_by_page(api: Api) -> None:
    channel = create_channel(api)
    ids = [deliver(api, channel, "u-1", f"mensaje {n}") for n in range(5)]
    contact = message_visible(api, ids[0])
    assert contact is not None
    url = f"/api/v1/contacts/{contact['id']}/timeline"
    page = api.get(url, params={"newest_first": "true", "limit": 2}).json()
    assert [m["id"] for m in page["items"]] == [ids[4], ids[3]]
    rest = api.get(
        url, params={"newest_first": "true", "limit": 10, "cursor": page["next_cursor"]}
    ).json()
    assert [m["id"] for m in rest["items"]] == [ids[2], ids[1], ids[0]]
    assert rest["next_cursor"] is None
    conversation_id = page["items"][0]["conversation_id"]
    latest = api.get(
        f"/api/v1/conversations/{conversation_id}/messages",
        params={"newest_first": "true", "limit": 1},
    ).json()
    assert [m["id"] for m in latest["items"]] == [ids[4]]
    oldest = api.get(f"/api/v1/conversations/{conversation_id}/messages", params={"limit": 1})
    assert [m["id"] for m in oldest.json()["items"]] == [ids[0]]


def test_embedded_server_keeps_planner_statistics_so_reads_stay_narrow(tmp_path: Path) -> None:
    server = make_server("sqlite", tmp_path)
    server.start()
    try:
        token = create_workspace_token(server.db_url, "stats")
        api = Api(
            base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15
        )
        channel = create_channel(api)
        for n in range(30):
            deliver(api, channel, f"u-{n}", f"hola {n}")
        conversations = api.get("/api/v1/conversations", params={"limit": 50}).json()["items"]
        for conversation in conversations:
            api.post(f"/api/v1/conversations/{conversation['id']}/labels", json={"label": "vip"})
        # The embedded server samples its tables when it starts (and every hour).
        server.stop()
        server.start()
        path = server.db_url.split(":///", 1)[1]
        with sqlite3.connect(path) as conn:
            plan = " ".join(
                row[3]
                for row in conn.execute(
                    "EXPLAIN QUERY PLAN SELECT conversation_id, label FROM conversation_labels "
                    "WHERE workspace_id = ? AND conversation_id IN (?) "
                    "ORDER BY conversation_id, label",
                    ("w", "c"),
                )
            )
        # One conversation's labels come from its key, not from every label of the workspace.
        assert "sqlite_autoindex_conversation_labels_1 (conversation_id=?)" in plan
        api.close()
    finally:
        dispose_server(server)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_message_search_pages_newest_first_whether_a_word_is_rare_common_or_common_long_ago(
    backend: str, tmp_path: Path
) -> None:
    """Every page of a search equals the matches sorted by time, whatever the plan.

    The messages are written in an order unrelated to their times (as imports and out-of-order
    deliveries write them), so no plan can lean on the order of insertion. On SQLite the words
    are chosen to take each of the plans of ``hilo.search.repository``.
    """
    from hilo.db import Database
    from hilo.models import Contact, Conversation, Message, Workspace
    from hilo.search import repository
    from hilo.search.service import words_of

    url = migrated_database(backend, tmp_path, "search.db")
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    messages: list[tuple[datetime, uuid.UUID, str]] = []
    for n in range(6_000):
        minute = rng.randrange(5_000)  # many share a minute: ties go by id
        words = ["mensaje"]
        if rng.random() < 0.9:
            words.append("hola")  # common throughout
        if rng.random() < 0.2:
            words.append("factura")  # less common
        if n % 1_500 == 0:
            words.append("R-204917")  # four of them
        if minute < 3_500 and rng.random() < 0.95:
            words.append("covid")  # common, but not in the newest 30 %
        messages.append((start + timedelta(minutes=minute), uuid.uuid4(), " ".join(words)))
    newest_first = sorted(messages, reverse=True)
    plans: dict[str, str] = {}

    async def go() -> None:
        db = Database(url, pool_size=2)
        async with db.transaction() as session:
            workspace = Workspace(slug="busca", name="Busca", created_at=start)
            other = Workspace(slug="otra", name="Otra", created_at=start)
            session.add_all([workspace, other])
            await session.flush()
            for owner, rows in ((other, messages[:300]), (workspace, messages)):
                contact = Contact(workspace_id=owner.id, name="Ana", created_at=start)
                session.add(contact)
                await session.flush()
                conversation = Conversation(workspace_id=owner.id, contact_id=contact.id)
                session.add(conversation)
                await session.flush()
                session.add_all(
                    Message(
                        # The other workspace's copies are newer: they would lead every page.
                        id=message_id if owner is workspace else uuid.uuid4(),
                        workspace_id=owner.id,
                        conversation_id=conversation.id,
                        contact_id=contact.id,
                        kind="inbound",
                        sender_type="contact",
                        status="received",
                        text=text,
                        created_at=moment + timedelta(days=400 if owner is other else 0),
                        updated_at=moment,
                    )
                    for moment, message_id, text in rows
                )
        await db.refresh_statistics()
        if backend == "postgres":  # as autovacuum would: the planner's count of messages
            async with db.engine.connect() as conn:
                await conn.exec_driver_sql("ANALYZE messages")

        async def page(words: list[str], after: Any, limit: int) -> list[tuple[datetime, Any]]:
            async with db.read() as session:
                found = await repository.search_messages(
                    session, workspace.id, words=words, after=after, limit=limit
                )
            return [(m.created_at, m.id) for m in found]

        for q in ("hola", "factura", "r-204917", "covid", "hola factura", "ninguna"):
            words = words_of(q)
            expected = [
                (moment, message_id)
                for moment, message_id, text in newest_first
                if set(words) <= set(re.findall(r"\w+", text.lower()))
            ]
            for limit in (3, 8):
                # The first pages, each from the previous one's last message.
                found: list[tuple[datetime, Any]] = []
                after = None
                for _ in range(4):
                    batch = await page(words, after, limit)
                    found += batch
                    if len(batch) < limit:
                        break
                    after = batch[-1]
                assert found == expected[: 4 * limit], (q, limit)
                # And a page deep in the results, and the last one.
                for index in (len(expected) // 2, len(expected) - 2):
                    if index > 0:
                        deep = await page(words, expected[index - 1], limit)
                        assert deep == expected[index : index + limit], (q, limit, index)
            if backend == "sqlite":  # the plan of the larger pages above
                async with db.read() as session:
                    plan, _walked = await repository._sqlite_plan(
                        session, repository._fts_expression(words), 8
                    )
                plans[q] = plan.value
        await db.dispose()

    try:
        asyncio.run(go())
    finally:
        if backend == "postgres":
            drop_pg_database(url)
    if backend == "sqlite":
        # Gathering the matches and walking: "covid" first asks about each recent message, finds
        # too few, and gathers.
        assert plans == {
            "hola": "walk_check",
            "factura": "walk_set",
            "r-204917": "sort",
            "covid": "walk_check",
            "hola factura": "walk_set",
            "ninguna": "none",
        }
