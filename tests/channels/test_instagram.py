"""The Instagram messaging channel end to end, over real HTTP, on SQLite and PostgreSQL.

Webhook bodies are Meta's documented shapes (``tests/fixtures/instagram``) with fresh
account ids, IGSIDs and mids per test, signed as Meta signs them (HMAC-SHA256 with the app
secret over the exact bytes sent). A local HTTP server plays the Instagram Send API. The
helpers are Messenger's: same platform, same shapes.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

import httpx
import pytest

from hilo.channels.base import InboundItem
from hilo.channels.instagram import InstagramChannel
from hilo.errors import InvalidPayload
from tests.channels.test_messenger import (
    FakeGraph,
    MetaChannel,
    body_bytes,
    context_for,
    find_message,
    graph,  # noqa: F401  (fixture)
    graph_error,
    inbound_events,
    landed,
    load,
    message_row,
    meta_signature,
    new_digits,
    raw,
    reply_and_wait_sent,
    send_error,
    timeline,
    wait_processed,
)
from tests.conftest import Api, wait_for

FIXTURE_ACCOUNT_ID = "17841400000000000"
FIXTURE_IGSID = "5550001112223334"
FIXTURE_TEXT_MID = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx"
FIXTURE_IMAGE_MID = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQy"
# The echo's mid, which messaging_seen then reports read: a message the business sent.
FIXTURE_OUT_MID = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQz"


def new_ig_mid() -> str:
    return "aWdf" + secrets.token_urlsafe(32)


def create_instagram(api: Api, *, api_base_url: str | None = None, **extra: str) -> MetaChannel:
    account_id, app_secret = "1784" + new_digits(13), secrets.token_hex(16)
    token = "IGAA" + secrets.token_urlsafe(32)
    config = {
        "instagram_account_id": account_id,
        "app_secret": app_secret,
        "access_token": token,
        **extra,
    }
    if api_base_url:
        config["api_base_url"] = api_base_url
    response = api.post(
        "/api/v1/channels", json={"type": "instagram", "name": "Instagram", "config": config}
    )
    assert response.status_code == 201, response.text
    channel = response.json()
    assert channel["provider"] == "meta"
    assert "access_token" not in channel["config"] and "app_secret" not in channel["config"]
    return MetaChannel(api, channel, account_id, FIXTURE_ACCOUNT_ID, app_secret, token)


def customer_writes(
    ig: MetaChannel, igsid: str, text: str = "Is this in stock?"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A text from ``igsid`` has landed: its contact and timeline item."""
    mid = new_ig_mid()
    body = ig.body(
        load("instagram", "message_text.json"),
        **{FIXTURE_IGSID: igsid, FIXTURE_TEXT_MID: mid, "Is this in stock?": text},
    )
    sent = ig.post(body)
    assert sent.status_code == 200, sent.text
    return landed(ig.api, mid)


# -- set-up ------------------------------------------------------------------------------------


def test_instagram_handshake_answers_meta_challenge_with_the_verify_token(api: Api) -> None:
    ig = create_instagram(api)
    verify_token = ig.channel["secrets"]["verify_token"]
    assert len(verify_token) >= 24
    assert ig.channel["webhook_url"].endswith(f"/webhooks/instagram/{ig.id}")
    assert ig.channel["config"] == {
        "instagram_account_id": ig.account_id,
        "api_base_url": "https://graph.instagram.com/v21.0",
    }
    params = {"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": "1158"}
    response = httpx.get(ig.url, params=params)
    assert (response.status_code, response.text) == (200, "1158")
    refused = httpx.get(ig.url, params={**params, "hub.verify_token": "guess"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "invalid_verify_token"
    # A verify token of the operator's choosing is kept as given.
    chosen = create_instagram(api, verify_token="my-verify-token")
    assert chosen.channel["secrets"]["verify_token"] == "my-verify-token"
    params["hub.verify_token"] = "my-verify-token"
    assert httpx.get(chosen.url, params=params).text == "1158"


def test_instagram_channel_config_is_checked(api: Api) -> None:
    response = api.post(
        "/api/v1/channels",
        json={
            "type": "instagram",
            "name": "IG",
            "config": {"instagram_account_id": "@tienda", "api_base_url": "graph.instagram.com"},
        },
    )
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    for name in ("instagram_account_id", "app_secret", "access_token", "api_base_url"):
        assert name in message


def test_instagram_forged_signature_stores_nothing(api: Api) -> None:
    ig = create_instagram(api)
    body = ig.body(
        load("instagram", "message_text.json"),
        **{FIXTURE_IGSID: new_digits(), FIXTURE_TEXT_MID: new_ig_mid()},
    )
    for signature in ("sha256=" + "0" * 64, meta_signature("another-app-secret", body), ""):
        response = ig.post(body, signature=signature)
        assert response.status_code == 401, signature
        assert response.json()["error"]["code"] == "invalid_signature"
    tampered = body.replace(b"in stock", b"on sale!")
    assert ig.post(tampered, signature=meta_signature(ig.app_secret, body)).status_code == 401
    time.sleep(0.3)
    assert api.get("/api/v1/contacts").json()["items"] == []
    assert inbound_events(api.server, ig.id) == []


# -- customers' messages -----------------------------------------------------------------------


def test_instagram_text_message_lands_in_contact_timeline(api: Api) -> None:
    ig = create_instagram(api)
    igsid, mid = new_digits(), new_ig_mid()
    words = f"¿Lo tenéis en talla M? {uuid.uuid4().hex}"
    body = ig.body(
        load("instagram", "message_text.json"),
        **{FIXTURE_IGSID: igsid, FIXTURE_TEXT_MID: mid, "Is this in stock?": words},
    )
    response = ig.post(body)
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True}
    contact, item = landed(api, mid)
    assert (item["text"], item["kind"], item["channel_id"]) == (words, "inbound", ig.id)
    assert item["sent_at"].startswith("2024-06-10T06:13:20")
    identities = [(i["kind"], i["value"], i["verified"]) for i in contact["identities"]]
    assert identities == [("instagram", igsid, True)]
    # Message text never reaches the logs at info level.
    assert words not in api.server.logs()


def test_instagram_same_igsid_on_another_account_is_another_contact(api: Api) -> None:
    # An IGSID is scoped to one Instagram account: equal ids on two accounts are two people.
    first, second = create_instagram(api), create_instagram(api)
    igsid = new_digits()
    one, _item = customer_writes(first, igsid)
    two, _item = customer_writes(second, igsid)
    assert one["id"] != two["id"]


def test_instagram_retry_does_not_duplicate(api: Api) -> None:
    ig = create_instagram(api)
    mid = new_ig_mid()
    body = ig.body(
        load("instagram", "message_text.json"),
        **{FIXTURE_IGSID: new_digits(), FIXTURE_TEXT_MID: mid},
    )
    assert ig.post(body).status_code == 200
    assert ig.post(body).status_code == 200
    contact, _item = landed(api, mid)
    assert ig.post(body).status_code == 200
    time.sleep(0.3)
    assert [i["provider_message_id"] for i in timeline(api, contact["id"])] == [mid]
    assert [r["provider_event_id"] for r in inbound_events(api.server, ig.id)] == [mid]


def test_instagram_image_keeps_attachment_metadata(api: Api) -> None:
    ig = create_instagram(api)
    mid = new_ig_mid()
    body = ig.body(
        load("instagram", "message_image.json"),
        **{FIXTURE_IGSID: new_digits(), FIXTURE_IMAGE_MID: mid},
    )
    assert ig.post(body).status_code == 200
    _contact, item = landed(api, mid)
    assert item["text"] == ""
    assert item["attachments"] == [{"type": "image", "url": "https://lookaside.example/ig_img"}]


def test_instagram_echo_is_ignored(api: Api) -> None:
    ig = create_instagram(api)
    igsid = new_digits()
    contact, _item = customer_writes(ig, igsid)
    echo_mid = new_ig_mid()
    body = ig.body(
        load("instagram", "message_echo.json"), **{FIXTURE_IGSID: igsid, FIXTURE_OUT_MID: echo_mid}
    )
    response = ig.post(body)
    assert response.status_code == 200
    row = wait_processed(ig, f"{echo_mid}:echo")
    assert row["status"] == "unsupported"
    assert row["item"]["sender"] is None
    # Never a customer message, and its text is not kept.
    assert row["item"]["text"] == ""
    assert [i["kind"] for i in timeline(api, contact["id"])] == ["inbound"]
    assert find_message(api, echo_mid) is None
    assert len(api.get("/api/v1/contacts").json()["items"]) == 1


def test_instagram_entry_for_another_account_is_ignored(api: Api) -> None:
    ig = create_instagram(api)
    theirs = new_ig_mid()
    other = load("instagram", "message_text.json")
    other["entry"][0]["id"] = "17841499999999999"
    body = ig.body(other, **{FIXTURE_IGSID: new_digits(), FIXTURE_TEXT_MID: theirs})
    response = ig.post(body)
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    # A Messenger delivery is not an Instagram one: refused, as malformed.
    page = ig.body(load("messenger", "message_text.json"))
    refused = ig.post(page)
    assert refused.status_code == 422, refused.text
    time.sleep(0.3)
    assert find_message(api, theirs) is None
    assert inbound_events(api.server, ig.id) == []


def test_instagram_baja_opts_out_confirms_and_refuses_later_replies(
    api: Api,
    graph: FakeGraph,  # noqa: F811
) -> None:
    ig = create_instagram(api, api_base_url=graph.base_url)
    igsid = new_digits()
    _contact, item = customer_writes(ig, igsid, "BAJA")
    conversation_id = item["conversation_id"]
    wait_for(lambda: graph.requests, message="the confirmation is sent")
    [request] = graph.requests
    assert request["body"]["recipient"] == {"id": igsid}
    assert "ALTA" in request["body"]["message"]["text"]
    refused = api.post(
        f"/api/v1/conversations/{conversation_id}/messages", json={"text": "¿Sigues ahí?"}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "contact_opted_out"


# -- replies and receipts ----------------------------------------------------------------------


def test_instagram_reply_is_sent_through_the_instagram_send_api(
    api: Api,
    graph: FakeGraph,  # noqa: F811
) -> None:
    ig = create_instagram(api, api_base_url=graph.base_url)
    igsid = new_digits()
    _contact, item = customer_writes(ig, igsid)
    text = "Sí, nos quedan dos en talla M."
    reply = reply_and_wait_sent(api, item["conversation_id"], text)
    assert reply["status"] == "sent", reply
    [request] = graph.requests
    assert request["path"] == f"/v21.0/{ig.account_id}/messages"
    assert request["headers"]["authorization"] == f"Bearer {ig.access_token}"
    assert ig.access_token not in request["query"]
    assert request["body"] == {
        "recipient": {"id": igsid},
        "messaging_type": "RESPONSE",
        "message": {"text": text, "metadata": reply["id"]},
    }
    assert reply["provider_message_id"] == graph.mids[0]
    assert text not in api.server.logs()


def test_instagram_seen_marks_the_reply_read(api: Api, graph: FakeGraph) -> None:  # noqa: F811
    ig = create_instagram(api, api_base_url=graph.base_url)
    igsid = new_digits()
    _contact, item = customer_writes(ig, igsid)
    conversation_id = item["conversation_id"]
    reply = reply_and_wait_sent(api, conversation_id, "Te lo reservamos.")
    mid = reply["provider_message_id"]
    body = ig.body(
        load("instagram", "messaging_seen.json"), **{FIXTURE_IGSID: igsid, FIXTURE_OUT_MID: mid}
    )
    assert ig.post(body).status_code == 200
    wait_for(lambda: message_row(api, conversation_id, reply["id"])["status"] == "read")
    assert wait_processed(ig, f"{mid}:read")["status"] == "processed"
    trail = api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
    types = [e["type"] for e in trail if e["message_id"] == reply["id"]]
    assert types == ["message.queued", "message.sent", "message.read"]


def test_instagram_reply_over_1000_bytes_fails_without_calling_meta(
    api: Api,
    graph: FakeGraph,  # noqa: F811
) -> None:
    ig = create_instagram(api, api_base_url=graph.base_url)
    _contact, item = customer_writes(ig, new_digits())
    conversation_id = item["conversation_id"]
    # 500 "ñ" are 1000 bytes of UTF-8: the limit, accepted. 334 "€" are 1002 bytes.
    fits = reply_and_wait_sent(api, conversation_id, "ñ" * 500)
    assert fits["status"] == "sent"
    too_long = reply_and_wait_sent(api, conversation_id, "€" * 334)
    assert too_long["status"] == "failed"
    assert "1002 bytes" in too_long["error"] and "1000" in too_long["error"]
    assert len(graph.requests) == 1


def test_instagram_reply_outside_the_window_fails_with_meta_error(
    api: Api,
    graph: FakeGraph,  # noqa: F811
) -> None:
    ig = create_instagram(api, api_base_url=graph.base_url)
    _contact, item = customer_writes(ig, new_digits())
    graph.answers = [
        (400, graph_error(10, "This message is sent outside of allowed window.", 2534022))
    ]
    reply = reply_and_wait_sent(api, item["conversation_id"], "¿Sigues interesada?")
    assert reply["status"] == "failed"
    assert "(#10) This message is sent outside of allowed window." in reply["error"]
    assert "24-hour" in reply["error"]
    assert len(graph.requests) == 1  # a refusal is not retried


def test_instagram_rate_limited_reply_is_sent_again_after_retry_after(
    api: Api,
    graph: FakeGraph,  # noqa: F811
) -> None:
    ig = create_instagram(api, api_base_url=graph.base_url)
    _contact, item = customer_writes(ig, new_digits())
    conversation_id = item["conversation_id"]
    graph.answers = [
        (429, graph_error(4, "Application request limit reached"), {"Retry-After": "1"})
    ]
    # The reply stays queued while Meta asks to wait, then goes out.
    row = reply_and_wait_sent(api, conversation_id, "Hola")
    assert row["status"] == "sent", row
    first, second = graph.requests
    assert first["body"] == second["body"]
    assert second["body"]["message"]["metadata"] == row["id"]
    assert row["provider_message_id"] == graph.mids[0]
    assert row["error"] is None


# -- every fixture case, parsed ----------------------------------------------------------------


def test_instagram_every_fixture_case_parses() -> None:
    adapter = InstagramChannel()
    context = context_for(adapter, {"instagram_account_id": FIXTURE_ACCOUNT_ID}, app_secret="s")

    def parse(payload: dict[str, Any]) -> list[InboundItem]:
        return adapter.parse_inbound(raw(body_bytes(payload)), context)

    def summary(name: str) -> list[tuple[str, str, str]]:
        return [(i.kind, i.provider_event_id, i.text) for i in parse(load("instagram", name))]

    assert summary("message_text.json") == [("message", FIXTURE_TEXT_MID, "Is this in stock?")]
    assert summary("message_image.json") == [("message", FIXTURE_IMAGE_MID, "")]
    assert summary("message_echo.json") == [("unsupported", f"{FIXTURE_OUT_MID}:echo", "")]
    assert summary("messaging_seen.json") == [("status", f"{FIXTURE_OUT_MID}:read", "")]
    [seen] = parse(load("instagram", "messaging_seen.json"))
    assert seen.data == {"provider_message_id": FIXTURE_OUT_MID, "status": "read"}
    [text] = parse(load("instagram", "message_text.json"))
    assert text.sender is not None and text.sender.external_id == FIXTURE_IGSID

    # The customer unsent a message: kept for the trail, not applied.
    deleted = load("instagram", "message_text.json")
    deleted["entry"][0]["messaging"][0]["message"] = {"mid": FIXTURE_TEXT_MID, "is_deleted": True}
    [unsent] = parse(deleted)
    assert (unsent.kind, unsent.provider_event_id) == ("unsupported", f"{FIXTURE_TEXT_MID}:deleted")

    # A story reply keeps the story it answers.
    story = load("instagram", "message_text.json")
    story["entry"][0]["messaging"][0]["message"]["reply_to"] = {
        "story": {"url": "https://lookaside.example/story", "id": "1799"}
    }
    [answer] = parse(story)
    assert answer.kind == "message"
    assert answer.data["reply_to_story"] == {"url": "https://lookaside.example/story", "id": "1799"}

    with pytest.raises(InvalidPayload):
        parse(load("messenger", "message_text.json"))
    with pytest.raises(InvalidPayload):
        adapter.parse_inbound(raw(b"{not json"), context)
    with pytest.raises(InvalidPayload):
        adapter.parse_inbound(raw(json.dumps({"object": "instagram"}).encode()), context)


def test_instagram_send_limit_counts_bytes_not_characters() -> None:
    adapter = InstagramChannel()
    context = context_for(
        adapter,
        {"instagram_account_id": FIXTURE_ACCOUNT_ID, "api_base_url": "http://127.0.0.1:9/v21.0"},
        access_token="t",
    )
    error = send_error(adapter, context, "😀" * 251)  # 251 characters, 1004 bytes
    assert error.retryable is False and "1004 bytes" in str(error)
