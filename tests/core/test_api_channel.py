"""The generic API channel end to end, over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.conftest import Api, wait_for
from tests.helpers import CompanyApp, post_api_message


def create_channel(api: Api, callback_url: str | None = None, name: str = "App") -> dict[str, Any]:
    config = {"callback_url": callback_url} if callback_url else {}
    response = api.post("/api/v1/channels", json={"type": "api", "name": name, "config": config})
    assert response.status_code == 201, response.text
    return response.json()


def message(sender_id: str, text: str, **sender: Any) -> dict[str, Any]:
    return {
        "id": f"m-{uuid.uuid4().hex}",
        "from": {"id": sender_id, **sender},
        "text": text,
        "sent_at": "2026-11-20T10:00:00+01:00",
    }


def timeline(api: Api, contact_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/api/v1/contacts/{contact_id}/timeline")
    assert response.status_code == 200, response.text
    return response.json()["items"]


def message_visible(api: Api, message_id: str) -> dict[str, Any] | None:
    """The contact that holds a message, once the worker has processed it."""
    for contact in api.get("/api/v1/contacts").json()["items"]:
        for item in timeline(api, contact["id"]):
            if item["id"] == message_id:
                return contact
    return None


def test_channel_creation_returns_webhook_url_and_secret(api: Api) -> None:
    channel = create_channel(api)
    assert channel["webhook_url"].endswith(f"/webhooks/api/{channel['id']}")
    assert len(channel["secret"]) >= 32
    listed = api.get(f"/api/v1/channels/{channel['id']}").json()
    assert "secret" not in listed and "secrets" not in listed


def test_same_verified_phone_on_two_channels_is_one_contact_one_conversation(api: Api) -> None:
    shop = create_channel(api, name="Shop app")
    rentals = create_channel(api, name="Rentals app")
    first = post_api_message(
        api,
        shop["id"],
        shop["secret"],
        message("u-1", "Se me ha averiado el coche", phone="612 34 56 78", name="Lucía"),
    )
    assert first.status_code == 200, first.text
    assert first.json()["duplicate"] is False
    second = post_api_message(
        api,
        rentals["id"],
        rentals["secret"],
        message("cust-99", "Sigo esperando la grúa", phone="+34 612-345-678"),
    )
    assert second.status_code == 200, second.text
    contact = wait_for(lambda: message_visible(api, second.json()["message_id"]))
    contacts = api.get("/api/v1/contacts").json()["items"]
    assert len(contacts) == 1
    assert contact["name"] == "Lucía"
    phones = [i for i in contact["identities"] if i["kind"] == "phone"]
    assert phones == [
        {"kind": "phone", "value": "+34612345678", "verified": True, "channel_id": None}
    ]
    items = timeline(api, contact["id"])
    assert [i["text"] for i in items] == ["Se me ha averiado el coche", "Sigo esperando la grúa"]
    assert [i["channel_id"] for i in items] == [shop["id"], rentals["id"]]
    assert len({i["conversation_id"] for i in items}) == 1
    conversation_id = items[0]["conversation_id"]
    trail = api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
    switch = [e for e in trail if e["type"] == "conversation.channel_switched"]
    assert switch and switch[0]["channel_id"] == rentals["id"]
    assert switch[0]["data"]["from_channel_id"] == shop["id"]


def test_phone_lookup_accepts_any_format(api: Api) -> None:
    channel = create_channel(api)
    sent = post_api_message(
        api, channel["id"], channel["secret"], message("u-7", "hola", phone="+34612000111")
    )
    wait_for(lambda: message_visible(api, sent.json()["message_id"]))
    found = api.get("/api/v1/contacts", params={"phone": "612 000 111"}).json()["items"]
    assert len(found) == 1
    assert api.get("/api/v1/contacts", params={"phone": "612 000 112"}).json()["items"] == []


def test_retried_delivery_does_not_duplicate_message(api: Api) -> None:
    channel = create_channel(api)
    payload = message("u-1", "hello")
    first = post_api_message(api, channel["id"], channel["secret"], payload)
    again = post_api_message(api, channel["id"], channel["secret"], payload)
    assert first.status_code == again.status_code == 200
    assert again.json() == {"message_id": first.json()["message_id"], "duplicate": True}
    contact = wait_for(lambda: message_visible(api, first.json()["message_id"]))
    time.sleep(0.3)
    assert [i["text"] for i in timeline(api, contact["id"])] == ["hello"]


def test_concurrent_duplicate_deliveries_yield_one_message(api: Api) -> None:
    channel = create_channel(api)
    payload = message("u-2", "¿Dónde está mi pedido?")
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(
            pool.map(
                lambda _: post_api_message(api, channel["id"], channel["secret"], payload), range(8)
            )
        )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert len({r.json()["message_id"] for r in responses}) == 1
    assert sum(not r.json()["duplicate"] for r in responses) == 1
    contact = wait_for(lambda: message_visible(api, responses[0].json()["message_id"]))
    time.sleep(0.3)
    assert len(timeline(api, contact["id"])) == 1


def test_forged_signature_is_refused_and_stores_nothing(api: Api) -> None:
    channel = create_channel(api)
    response = post_api_message(
        api, channel["id"], channel["secret"], message("u-3", "x"), signature="sha256=" + "0" * 64
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    wrong_secret = post_api_message(api, channel["id"], "not-the-secret", message("u-3", "x"))
    assert wrong_secret.status_code == 401
    time.sleep(0.3)
    assert api.get("/api/v1/contacts").json()["items"] == []


def test_stale_timestamp_is_refused_and_stores_nothing(api: Api) -> None:
    channel = create_channel(api)
    stale = post_api_message(
        api, channel["id"], channel["secret"], message("u-4", "x"), timestamp=int(time.time()) - 600
    )
    assert stale.status_code == 401
    assert stale.json()["error"]["code"] == "stale_timestamp"
    time.sleep(0.3)
    assert api.get("/api/v1/contacts").json()["items"] == []


def test_webhook_errors_are_clear_4xx(api: Api) -> None:
    channel = create_channel(api)
    unknown = post_api_message(api, str(uuid.uuid4()), channel["secret"], message("u", "x"))
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_channel"
    not_json = post_api_message(api, channel["id"], channel["secret"], b"{not json")
    assert not_json.status_code == 422
    missing = post_api_message(api, channel["id"], channel["secret"], {"id": "x", "from": {}})
    assert missing.status_code == 422
    assert "from.id" in missing.json()["error"]["message"]
    huge = post_api_message(
        api, channel["id"], channel["secret"], message("u", "x" * (1024 * 1024 + 10))
    )
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "payload_too_large"
    odd = post_api_message(api, channel["id"], channel["secret"], "caf\xe9".encode("latin-1"))
    assert odd.status_code == 422


def test_errors_speak_spanish_when_asked(api: Api) -> None:
    response = httpx.get(
        f"{api.base_url}/api/v1/contacts", headers={"Accept-Language": "es-ES,es;q=0.9"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Se necesita autenticación."


def test_reply_is_delivered_once_even_when_first_attempt_failed(api: Api) -> None:
    app = CompanyApp(fail_first=1).start()
    try:
        channel = create_channel(api, callback_url=app.url)
        sent = post_api_message(
            api, channel["id"], channel["secret"], message("u-5", "¿Abrís el domingo?")
        )
        contact = wait_for(lambda: message_visible(api, sent.json()["message_id"]))
        conversation_id = timeline(api, contact["id"])[0]["conversation_id"]
        reply = api.post(
            f"/api/v1/conversations/{conversation_id}/messages", json={"text": "Sí, de 10 a 14 h."}
        )
        assert reply.status_code == 202, reply.text
        assert reply.json()["status"] == "queued"
        reply_id = reply.json()["id"]

        def sent_status() -> bool:
            items = api.get(f"/api/v1/conversations/{conversation_id}/messages").json()["items"]
            return any(i["id"] == reply_id and i["status"] == "sent" for i in items)

        wait_for(sent_status, timeout=15)
        assert app.attempts == 2
        assert len(app.received) == 1
        delivery = app.received[0]
        body = json.loads(delivery["body"])
        assert body["event"] == "message.created"
        assert body["text"] == "Sí, de 10 a 14 h."
        assert body["contact"] == {"from_id": "u-5"}
        assert body["message_id"] == reply_id == delivery["headers"]["x-hilo-delivery"]
        from hilo.channels.api import sign

        headers = delivery["headers"]
        assert headers["x-hilo-signature"] == sign(
            channel["secret"], headers["x-hilo-timestamp"], delivery["body"]
        )
    finally:
        app.stop()


def test_private_note_is_never_sent(api: Api) -> None:
    app = CompanyApp().start()
    try:
        channel = create_channel(api, callback_url=app.url)
        sent = post_api_message(api, channel["id"], channel["secret"], message("u-6", "hola"))
        contact = wait_for(lambda: message_visible(api, sent.json()["message_id"]))
        conversation_id = timeline(api, contact["id"])[0]["conversation_id"]
        note = api.post(
            f"/api/v1/conversations/{conversation_id}/messages",
            json={"text": "Cliente VIP, tratar con cuidado", "private": True},
        )
        assert note.status_code == 202
        assert note.json()["private"] is True
        time.sleep(1.0)
        assert app.attempts == 0
    finally:
        app.stop()


def test_api_channel_has_no_setup_check(api: Api) -> None:
    channel = create_channel(api)
    response = httpx.get(f"{api.base_url}/webhooks/api/{channel['id']}?hub.challenge=1")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "no_handshake"
