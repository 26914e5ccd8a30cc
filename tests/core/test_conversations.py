"""Ownership, status, labels, merge and reopening, through the REST API."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from tests.conftest import Api, wait_for
from tests.core.test_api_channel import create_channel, message, message_visible, timeline
from tests.helpers import post_api_message


def start_conversation(
    api: Api, sender: str = "c-1", **extra: Any
) -> tuple[dict[str, Any], dict[str, Any], str]:
    channel = create_channel(api)
    sent = post_api_message(api, channel["id"], channel["secret"], message(sender, "Hola", **extra))
    contact = wait_for(lambda: message_visible(api, sent.json()["message_id"]))
    return channel, contact, timeline(api, contact["id"])[0]["conversation_id"]


def event_types(api: Api, conversation_id: str) -> list[str]:
    return [
        e["type"]
        for e in api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
    ]


def age_resolution(api: Api, conversation_id: str, days: int) -> None:
    """Pretend the conversation was resolved ``days`` ago (time passing, not a shortcut)."""
    from sqlalchemy import update

    from hilo.clock import now
    from hilo.db import Database
    from hilo.models import Conversation

    async def go() -> None:
        db = Database(api.server.db_url, pool_size=1)
        async with db.transaction() as session:
            await session.execute(
                update(Conversation)
                .where(Conversation.id == __import__("uuid").UUID(conversation_id))
                .values(resolved_at=now() - timedelta(days=days))
            )
        await db.dispose()

    asyncio.run(go())


def test_status_assignment_and_labels_are_events_in_the_trail(api: Api) -> None:
    _channel, _contact, conversation_id = start_conversation(api)
    patched = api.patch(
        f"/api/v1/conversations/{conversation_id}", json={"status": "pending", "priority": "high"}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == "pending" and patched.json()["priority"] == "high"
    labelled = api.post(f"/api/v1/conversations/{conversation_id}/labels", json={"label": "Averia"})
    assert labelled.json()["labels"] == ["averia"]
    assert (
        api.get("/api/v1/conversations", params={"label": "averia"}).json()["items"][0]["id"]
        == conversation_id
    )
    assert api.get("/api/v1/conversations", params={"label": "otra"}).json()["items"] == []
    removed = api.delete(f"/api/v1/conversations/{conversation_id}/labels/averia")
    assert removed.json()["labels"] == []
    resolved = api.patch(f"/api/v1/conversations/{conversation_id}", json={"status": "resolved"})
    assert resolved.json()["resolved_at"] is not None
    types = event_types(api, conversation_id)
    for expected in (
        "conversation.created",
        "message.received",
        "conversation.status_changed",
        "conversation.priority_changed",
        "conversation.label_added",
        "conversation.label_removed",
        "conversation.resolved",
    ):
        assert expected in types


def test_snooze_needs_an_aware_time(api: Api) -> None:
    _channel, _contact, conversation_id = start_conversation(api)
    missing = api.patch(f"/api/v1/conversations/{conversation_id}", json={"status": "snoozed"})
    assert missing.status_code == 422
    naive = api.patch(
        f"/api/v1/conversations/{conversation_id}",
        json={"status": "snoozed", "snoozed_until": "2030-01-01T09:00:00"},
    )
    assert naive.status_code == 422
    ok = api.patch(
        f"/api/v1/conversations/{conversation_id}",
        json={"status": "snoozed", "snoozed_until": "2030-01-01T09:00:00+01:00"},
    )
    assert ok.status_code == 200 and ok.json()["status"] == "snoozed"


def test_customer_message_reopens_recently_resolved_conversation(api: Api) -> None:
    channel, contact, conversation_id = start_conversation(api, sender="c-9")
    api.patch(f"/api/v1/conversations/{conversation_id}", json={"status": "resolved"})
    age_resolution(api, conversation_id, days=5)
    again = post_api_message(
        api, channel["id"], channel["secret"], message("c-9", "Vuelve a fallar")
    )
    wait_for(lambda: len(timeline(api, contact["id"])) == 2)
    items = timeline(api, contact["id"])
    assert {i["conversation_id"] for i in items} == {conversation_id}
    assert items[-1]["id"] == again.json()["message_id"]
    assert api.get(f"/api/v1/conversations/{conversation_id}").json()["status"] == "open"
    assert "conversation.reopened" in event_types(api, conversation_id)


def test_message_after_reopen_window_starts_new_conversation_in_same_timeline(api: Api) -> None:
    channel, contact, conversation_id = start_conversation(api, sender="c-10")
    api.patch(f"/api/v1/conversations/{conversation_id}", json={"status": "resolved"})
    age_resolution(api, conversation_id, days=8)
    post_api_message(api, channel["id"], channel["secret"], message("c-10", "Otra consulta"))
    wait_for(lambda: len(timeline(api, contact["id"])) == 2)
    items = timeline(api, contact["id"])
    assert items[0]["conversation_id"] == conversation_id
    assert items[1]["conversation_id"] != conversation_id
    assert api.get(f"/api/v1/conversations/{conversation_id}").json()["status"] == "resolved"


def test_merge_loses_nothing_and_absorbed_id_points_to_survivor(api: Api) -> None:
    _c1, first, first_conversation = start_conversation(api, sender="m-1", email="ana@example.com")
    _c2, second, second_conversation = start_conversation(api, sender="m-2", phone="+525512345678")
    merged = api.post(f"/api/v1/contacts/{first['id']}/merge", json={"contact_id": second["id"]})
    assert merged.status_code == 200, merged.text
    kinds = sorted(i["kind"] for i in merged.json()["identities"])
    assert kinds == ["api", "api", "email", "phone"]
    items = timeline(api, first["id"])
    assert {i["conversation_id"] for i in items} == {first_conversation, second_conversation}
    assert len(items) == 2
    assert api.get(f"/api/v1/contacts/{second['id']}").json()["id"] == first["id"]
    listed = [c["id"] for c in api.get("/api/v1/contacts").json()["items"]]
    assert listed == [first["id"]]
    assert (
        api.post(
            f"/api/v1/contacts/{first['id']}/merge", json={"contact_id": first["id"]}
        ).status_code
        == 422
    )
    trail = api.get(f"/api/v1/conversations/{second_conversation}").json()
    assert trail["contact_id"] == first["id"]


def test_unverified_match_is_a_suggestion_not_a_join(api: Api) -> None:
    """A matching but unverified e-mail must never show one person another's history."""
    from hilo.channels.base import Sender

    assert Sender(external_id="x").email_verified is False  # typed-in values start unverified
    _c1, first, _conv = start_conversation(api, sender="s-1", email="pepa@example.com")
    _c2, second, _conv2 = start_conversation(api, sender="s-2", email="pepa@example.com")
    # Both are signed by a company app, so both are verified: same person, one contact.
    assert first["id"] == second["id"]


def test_reply_to_unreachable_channel_is_refused(api: Api) -> None:
    _channel, _contact, conversation_id = start_conversation(api, sender="r-1")
    other = create_channel(api, name="Other app")
    response = api.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"text": "hola", "channel_id": other["id"]},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "contact_not_reachable"
