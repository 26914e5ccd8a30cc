"""The Telegram channel end to end, over real HTTP, on SQLite and PostgreSQL.

Updates are the shared Bot API fixtures (copied to ``tests/fixtures/telegram``) with their
``update_id`` and user id moved to fresh random values, so tests sharing a server never
meet. Replies go to a local server speaking the Bot API's ``sendMessage``.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from hilo.channels.base import ChannelContext, RawRequest
from hilo.channels.telegram import TelegramChannel, split_text, utf16_len
from hilo.errors import InvalidPayload, InvalidSignature, NotFound
from tests.conftest import Api, wait_for
from tests.core.test_api_channel import timeline

FIXTURES = Path(__file__).parent.parent / "fixtures" / "telegram"
FIXTURE_USER_ID = 111111111
BOT_TOKEN = "123:ABC"
SECRET = "s3cret"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


@dataclass
class FakeBotApi:
    """A local server answering ``sendMessage`` as Telegram does, recording each call.

    ``replies`` maps a call's number (1 for the first) to the (status, body) it gets; every
    other call succeeds with a new message id.
    """

    replies: dict[int, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    next_message_id: int = 1000
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append({"path": path, "json": body})
            if len(self.requests) in self.replies:
                return self.replies[len(self.requests)]
            self.next_message_id += 1
            message_id = self.next_message_id
        ok = fixture("sendMessage_response")
        ok["result"].update(
            message_id=message_id,
            chat={**ok["result"]["chat"], "id": body.get("chat_id")},
            text=body.get("text"),
        )
        return 200, ok

    def start(self) -> FakeBotApi:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                status, reply = fake.answer(self.path, json.loads(self.rfile.read(length)))
                payload = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Bot:
    """A Telegram channel on a fresh workspace, with a user of its own."""

    api: Api
    channel: dict[str, Any]
    fake: FakeBotApi
    user_id: int = field(default_factory=lambda: random.randint(10**9, 2 * 10**9))
    offset: int = field(default_factory=lambda: random.randint(1, 10**8))

    def update(self, name: str) -> dict[str, Any]:
        """A fixture update moved to this test's user and update ids."""
        text = (FIXTURES / f"{name}.json").read_text()
        data: dict[str, Any] = json.loads(text.replace(str(FIXTURE_USER_ID), str(self.user_id)))
        data["update_id"] += self.offset
        return data

    def text_update(self, text: str, message_id: int) -> dict[str, Any]:
        data = self.update("update_message_text")
        data["update_id"] += message_id
        data["message"].update(message_id=message_id, text=text)
        return data

    def post(
        self, payload: dict[str, Any] | bytes, *, secret: str | None = SECRET
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        # Webhooks carry no bearer token: the secret token is the authentication.
        return httpx.post(
            f"{self.api.base_url}/webhooks/telegram/{self.channel['id']}",
            content=body,
            headers=headers,
            timeout=15,
        )

    def contacts(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.get("/api/v1/contacts").json()["items"]
        return items

    def find(self, text: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The contact and timeline item of a message with ``text``, once processed."""
        for contact in self.contacts():
            for item in timeline(self.api, contact["id"]):
                if item["text"] == text:
                    return contact, item
        return None

    def wait(self, text: str) -> tuple[dict[str, Any], dict[str, Any]]:
        found: tuple[dict[str, Any], dict[str, Any]] = wait_for(
            lambda: self.find(text), message=f"message {text!r} in a timeline"
        )
        return found

    def conversation_of(self, text: str) -> str:
        return str(self.wait(text)[1]["conversation_id"])

    def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        response = self.api.get(f"/api/v1/conversations/{conversation_id}/messages")
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def reply(self, conversation_id: str, text: str) -> dict[str, Any]:
        response = self.api.post(
            f"/api/v1/conversations/{conversation_id}/messages", json={"text": text}
        )
        assert response.status_code == 202, response.text
        reply: dict[str, Any] = response.json()
        assert reply["status"] == "queued"
        return reply

    def wait_status(self, conversation_id: str, message_id: str, status: str) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            for item in self.messages(conversation_id):
                if item["id"] == message_id and item["status"] == status:
                    return item
            return None

        found: dict[str, Any] = wait_for(check, timeout=20, message=f"reply {status}")
        return found

    def wait_status_of_text(
        self, conversation_id: str, start: str, status: str = "sent"
    ) -> dict[str, Any]:
        """The message starting with ``start``, once it reached ``status``."""

        def check() -> dict[str, Any] | None:
            for item in self.messages(conversation_id):
                if item["text"].startswith(start) and item["status"] == status:
                    return item
            return None

        found: dict[str, Any] = wait_for(check, timeout=20, message=f"{start!r} {status}")
        return found


@pytest.fixture
def fake_api() -> Iterator[FakeBotApi]:
    fake = FakeBotApi().start()
    yield fake
    fake.stop()


def create_telegram_channel(api: Api, config: dict[str, Any]) -> httpx.Response:
    return api.post("/api/v1/channels", json={"type": "telegram", "name": "Bot", "config": config})


@pytest.fixture
def bot(api: Api, fake_api: FakeBotApi) -> Bot:
    response = create_telegram_channel(
        api, {"bot_token": BOT_TOKEN, "secret_token": SECRET, "api_base_url": fake_api.url}
    )
    assert response.status_code == 201, response.text
    return Bot(api=api, channel=response.json(), fake=fake_api)


# --- setting up ---------------------------------------------------------------------------


def test_telegram_channel_creation_returns_webhook_url_and_secret_token_once(bot: Bot) -> None:
    channel = bot.channel
    assert channel["type"] == "telegram" and channel["provider"] == "telegram"
    assert channel["webhook_url"].endswith(f"/webhooks/telegram/{channel['id']}")
    assert channel["secrets"] == {"bot_token": BOT_TOKEN, "secret_token": SECRET}
    assert channel["config"] == {"api_base_url": bot.fake.url}
    shown = bot.api.get(f"/api/v1/channels/{channel['id']}").json()
    assert "secrets" not in shown and "secret" not in shown
    assert BOT_TOKEN not in json.dumps(shown) and SECRET not in json.dumps(shown)


def test_telegram_secret_token_is_generated_when_not_given(api: Api) -> None:
    response = create_telegram_channel(api, {"bot_token": BOT_TOKEN})
    assert response.status_code == 201, response.text
    token = response.json()["secrets"]["secret_token"]
    assert 32 <= len(token) <= 256
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
    assert response.json()["config"] == {}


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "bot_token"),
        ({"bot_token": "not a token"}, "bot_token"),
        ({"bot_token": BOT_TOKEN, "secret_token": "has spaces"}, "secret_token"),
        ({"bot_token": BOT_TOKEN, "secret_token": "x" * 257}, "secret_token"),
        ({"bot_token": BOT_TOKEN, "api_base_url": "ftp://example.org"}, "api_base_url"),
    ],
)
def test_telegram_invalid_config_is_422_naming_the_field(
    api: Api, config: dict[str, Any], field: str
) -> None:
    response = create_telegram_channel(api, config)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_config"
    assert field in error["message"]


def test_telegram_has_no_setup_check(bot: Bot) -> None:
    response = httpx.get(f"{bot.api.base_url}/webhooks/telegram/{bot.channel['id']}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "no_handshake"


# --- inbound ------------------------------------------------------------------------------


def test_telegram_text_message_lands_in_contact_timeline(bot: Bot) -> None:
    response = bot.post(bot.update("update_message_text"))
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True}
    contact, item = bot.wait("Hello bot")
    assert contact["name"] == "Jane Doe"
    assert contact["identities"] == [
        {
            "kind": "telegram",
            "value": str(bot.user_id),
            "verified": True,
            "channel_id": bot.channel["id"],
        }
    ]
    assert item["channel_id"] == bot.channel["id"]
    assert item["kind"] == "inbound"
    assert item["provider_message_id"] == f"{bot.user_id}:42"
    assert item["attachments"] == []
    sent_at = datetime.fromisoformat(item["sent_at"].replace("Z", "+00:00"))
    assert sent_at == datetime.fromtimestamp(1718000000, tz=UTC)


def test_telegram_retry_of_same_update_does_not_duplicate(bot: Bot) -> None:
    update = bot.update("update_message_text")
    first = bot.post(update)
    again = bot.post(update)
    assert first.status_code == again.status_code == 200
    assert again.json() == {"ok": True}
    # A later message, processed after the retry would have been, marks the end.
    bot.post(bot.update("update_message_start_command"))
    contact, _item = bot.wait("/start ticket_abc")
    assert [i["text"] for i in timeline(bot.api, contact["id"])] == [
        "Hello bot",
        "/start ticket_abc",
    ]
    assert len(bot.contacts()) == 1


def test_telegram_start_command_is_a_normal_message(bot: Bot) -> None:
    response = bot.post(bot.update("update_message_start_command"))
    assert response.status_code == 200
    contact, item = bot.wait("/start ticket_abc")
    assert item["provider_message_id"] == f"{bot.user_id}:43"
    assert contact["name"] == "Jane Doe"


def test_telegram_reply_to_a_bot_message_lands_as_a_customer_message(bot: Bot) -> None:
    response = bot.post(bot.update("update_message_reply"))
    assert response.status_code == 200
    contact, item = bot.wait("thanks!")
    assert item["provider_message_id"] == f"{bot.user_id}:45"
    assert [i["text"] for i in timeline(bot.api, contact["id"])] == ["thanks!"]


def test_telegram_edited_message_updates_text_and_keeps_original_in_trail(bot: Bot) -> None:
    bot.post(bot.update("update_message_text"))
    conversation_id = bot.conversation_of("Hello bot")
    response = bot.post(bot.update("update_edited_message"))
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True}
    contact, item = bot.wait("Hello bot (edited)")
    assert item["provider_message_id"] == f"{bot.user_id}:42"
    assert [i["text"] for i in timeline(bot.api, contact["id"])] == ["Hello bot (edited)"]
    trail = bot.api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
    edits = [e for e in trail if e["type"] == "message.edited"]
    assert len(edits) == 1
    assert edits[0]["message_id"] == item["id"]
    assert edits[0]["data"]["previous_text"] == "Hello bot"
    assert edits[0]["actor"]["type"] == "contact"


def test_telegram_photo_message_keeps_attachment_metadata(bot: Bot) -> None:
    response = bot.post(bot.update("update_message_photo"))
    assert response.status_code == 200
    _contact, item = bot.wait("broken screen")
    assert item["attachments"] == [
        {
            "type": "photo",
            "file_id": "AgACAgQAAxkBAAIBlarge",
            "file_unique_id": "AQADlarge",
            "mime_type": "image/jpeg",
            "size": 54321,
            "width": 1280,
            "height": 960,
        }
    ]


def test_telegram_callback_query_is_a_customer_message_with_its_data(bot: Bot) -> None:
    bot.post(bot.update("update_message_text"))
    bot.wait("Hello bot")
    update = bot.update("update_callback_query")
    response = bot.post(update)
    assert response.status_code == 200, response.text
    # The webhook answer also answers the button press, so its spinner stops.
    assert response.json() == {
        "ok": True,
        "method": "answerCallbackQuery",
        "callback_query_id": update["callback_query"]["id"],
    }
    contact, item = bot.wait("csat:5")
    assert item["provider_message_id"] == f"cbq:{update['callback_query']['id']}"
    assert len(bot.contacts()) == 1
    assert [i["text"] for i in timeline(bot.api, contact["id"])] == ["Hello bot", "csat:5"]


def test_telegram_only_a_contact_shared_of_oneself_adds_a_verified_phone(bot: Bot) -> None:
    someone_else = bot.update("update_message_text")
    del someone_else["message"]["text"]
    someone_else["message"]["contact"] = {
        "phone_number": "+34 600 000 001",
        "first_name": "Pablo",
        "user_id": bot.user_id + 1,
    }
    bot.post(someone_else)
    contact, item = wait_for(lambda: bot.find(""), message="the shared contact card")
    assert item["attachments"][0]["type"] == "contact"
    assert [i["kind"] for i in contact["identities"]] == ["telegram"]

    own = bot.update("update_message_text")
    own["update_id"] += 1
    own["message"]["message_id"] = 50
    del own["message"]["text"]
    own["message"]["contact"] = {
        "phone_number": "+34 612 345 678",
        "first_name": "Jane",
        "user_id": bot.user_id,
    }
    bot.post(own)

    def phone() -> list[dict[str, Any]]:
        return [i for c in bot.contacts() for i in c["identities"] if i["kind"] == "phone"]

    assert wait_for(phone, message="a phone identity") == [
        {"kind": "phone", "value": "+34612345678", "verified": True, "channel_id": None}
    ]
    assert len(bot.contacts()) == 1


def test_telegram_unsupported_updates_are_acknowledged_and_add_no_message(bot: Bot) -> None:
    member = {
        "update_id": bot.offset + 7,
        "my_chat_member": {
            "chat": {"id": bot.user_id, "type": "private", "first_name": "Jane"},
            "from": {"id": bot.user_id, "is_bot": False, "first_name": "Jane"},
            "date": 1718000000,
            "old_chat_member": {"status": "member", "user": {"id": 1, "is_bot": True}},
            "new_chat_member": {"status": "kicked", "user": {"id": 1, "is_bot": True}},
        },
    }
    group = bot.update("update_message_text")
    group["update_id"] += 8
    group["message"]["chat"] = {"id": -100123, "type": "supergroup", "title": "Fans"}
    group["message"]["text"] = "hello from a group"
    for update in (member, group):
        response = bot.post(update)
        assert response.status_code == 200, response.text
        assert response.json() == {"ok": True}
    bot.post(bot.update("update_message_text"))
    contact, _item = bot.wait("Hello bot")
    assert [i["text"] for i in timeline(bot.api, contact["id"])] == ["Hello bot"]
    assert len(bot.contacts()) == 1


def test_telegram_wrong_secret_token_is_refused_and_stores_nothing(bot: Bot) -> None:
    forged = bot.text_update("forged", 60)
    for secret in (None, "", "not-the-secret", SECRET + "x"):
        response = bot.post(forged, secret=secret)
        assert response.status_code == 401, (secret, response.text)
        assert response.json()["error"]["code"] == "invalid_signature"
    other = fixture("telegram_secret_token")["secret_token"]
    assert bot.post(forged, secret=other).status_code == 401
    bot.post(bot.text_update("genuine", 61))
    contact, _item = bot.wait("genuine")
    assert [i["text"] for i in timeline(bot.api, contact["id"])] == ["genuine"]
    assert len(bot.contacts()) == 1


def test_telegram_malformed_update_is_422(bot: Bot) -> None:
    no_chat = bot.update("update_message_text")
    del no_chat["message"]["chat"]
    bad_id = bot.update("update_message_text")
    bad_id["update_id"] = "abc"
    cases: list[dict[str, Any] | bytes] = [
        b"{not json",
        b"[]",
        "caf\xe9".encode("latin-1"),
        {"message": bot.update("update_message_text")["message"]},
        bad_id,
        no_chat,
    ]
    for case in cases:
        response = bot.post(case)
        assert response.status_code == 422, (case, response.text)
        assert response.json()["error"]["code"] == "invalid_payload"
    missing = bot.post({"message": {}})
    assert "update_id" in missing.json()["error"]["message"]


# --- outbound -----------------------------------------------------------------------------


def test_telegram_reply_is_sent_through_sendMessage(bot: Bot) -> None:
    bot.post(bot.update("update_message_text"))
    conversation_id = bot.conversation_of("Hello bot")
    reply = bot.reply(conversation_id, "Hi Jane, an agent will reply shortly.")
    sent = bot.wait_status(conversation_id, reply["id"], "sent")
    assert len(bot.fake.requests) == 1
    request = bot.fake.requests[0]
    assert request["path"] == f"/bot{BOT_TOKEN}/sendMessage"
    expected = fixture("sendMessage_request")
    del expected["reply_parameters"]
    expected["chat_id"] = bot.user_id
    assert request["json"] == expected
    assert sent["provider_message_id"] == f"{bot.user_id}:{bot.fake.next_message_id}"
    assert sent["error"] is None


def test_telegram_long_reply_is_split_into_4096_char_parts(bot: Bot) -> None:
    bot.post(bot.update("update_message_text"))
    conversation_id = bot.conversation_of("Hello bot")
    text = "palabra " * 1200 + "fin"
    reply = bot.reply(conversation_id, text)
    sent = bot.wait_status(conversation_id, reply["id"], "sent")
    parts = [r["json"]["text"] for r in bot.fake.requests]
    assert len(parts) == 3
    assert all(len(p) <= 4096 for p in parts)
    assert "".join(parts) == text
    assert all(p.endswith("palabra ") for p in parts[:-1])
    assert {r["json"]["chat_id"] for r in bot.fake.requests} == {bot.user_id}
    assert sent["provider_message_id"] == f"{bot.user_id}:1001"


def test_telegram_rate_limit_between_parts_is_waited_out_without_resending_parts(
    bot: Bot,
) -> None:
    slow_down = fixture("error_429")
    slow_down["parameters"]["retry_after"] = 1
    bot.fake.replies[2] = (429, slow_down)
    bot.post(bot.update("update_message_text"))
    conversation_id = bot.conversation_of("Hello bot")
    text = "palabra " * 1200
    reply = bot.reply(conversation_id, text)
    sent = bot.wait_status(conversation_id, reply["id"], "sent")
    parts = [r["json"]["text"] for r in bot.fake.requests]
    assert len(parts) == 4
    assert parts[1] == parts[2]
    assert parts[0] + parts[2] + parts[3] == text
    assert sent["provider_message_id"] == f"{bot.user_id}:1001"


def test_telegram_refused_later_part_fails_the_reply_without_resending_the_first(
    bot: Bot,
) -> None:
    bot.fake.replies[2] = (400, {"ok": False, "error_code": 400, "description": "Bad Request"})
    bot.post(bot.update("update_message_text"))
    conversation_id = bot.conversation_of("Hello bot")
    reply = bot.reply(conversation_id, "palabra " * 1200)
    failed = bot.wait_status(conversation_id, reply["id"], "failed")
    assert "part 2 of 3" in failed["error"] and "Bad Request" in failed["error"]
    assert len(bot.fake.requests) == 2


def test_telegram_429_is_retried(bot: Bot) -> None:
    bot.fake.replies[1] = (429, fixture("error_429"))
    bot.post(bot.update("update_message_text"))
    conversation_id = bot.conversation_of("Hello bot")
    reply = bot.reply(conversation_id, "¿Sigue roto?")
    sent = bot.wait_status(conversation_id, reply["id"], "sent")
    assert [r["json"]["text"] for r in bot.fake.requests] == ["¿Sigue roto?", "¿Sigue roto?"]
    assert sent["provider_message_id"] == f"{bot.user_id}:1001"
    assert sent["error"] is None


def test_telegram_refused_reply_fails_once_with_telegram_description(bot: Bot) -> None:
    blocked = {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked"}
    bot.fake.replies[1] = (403, blocked)
    bot.post(bot.update("update_message_text"))
    conversation_id = bot.conversation_of("Hello bot")
    reply = bot.reply(conversation_id, "¿Hola?")
    failed = bot.wait_status(conversation_id, reply["id"], "failed")
    assert "Forbidden: bot was blocked" in failed["error"]
    assert BOT_TOKEN not in failed["error"]
    assert len(bot.fake.requests) == 1


# --- the adapter on its own ---------------------------------------------------------------


def _context() -> ChannelContext:
    return ChannelContext(
        id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        type="telegram",
        provider="telegram",
        config={},
        secrets={"bot_token": BOT_TOKEN, "secret_token": SECRET},
    )


def _request(payload: dict[str, Any], secret: str | None = SECRET) -> RawRequest:
    headers = {"x-telegram-bot-api-secret-token": secret} if secret is not None else {}
    return RawRequest(
        body=json.dumps(payload).encode(),
        headers=headers,
        query={},
        url="http://hilo.test/webhooks/telegram/x",
        received_at=datetime.now(tz=UTC),
    )


def test_telegram_adapter_accepts_the_shared_secret_token_vector() -> None:
    vector = fixture("telegram_secret_token")
    context = ChannelContext(
        **{**_context().__dict__, "secrets": {"secret_token": vector["secret_token"]}}
    )
    header = vector["header"]["X-Telegram-Bot-Api-Secret-Token"]
    TelegramChannel().verify(_request({}, secret=header), context)
    with pytest.raises(InvalidSignature):
        TelegramChannel().verify(_request({}, secret=header.lower()), context)


def test_telegram_reply_keeps_the_replied_message_id() -> None:
    [item] = TelegramChannel().parse_inbound(_request(fixture("update_message_reply")), _context())
    assert item.kind == "message"
    assert item.provider_event_id == f"{FIXTURE_USER_ID}:45"
    assert item.data["reply_to_provider_message_id"] == f"{FIXTURE_USER_ID}:40"
    assert item.sender is not None and item.sender.phone is None


def test_telegram_edit_and_unsupported_items_have_their_own_event_ids() -> None:
    adapter = TelegramChannel()
    [edit] = adapter.parse_inbound(_request(fixture("update_edited_message")), _context())
    assert (edit.kind, edit.provider_event_id) == ("edit", "edit:900000005")
    assert edit.data == {"provider_message_id": f"{FIXTURE_USER_ID}:42"}
    assert edit.text == "Hello bot (edited)"
    poll = {"update_id": 5, "poll": {"id": "1", "question": "?", "options": []}}
    [other] = adapter.parse_inbound(_request(poll), _context())
    assert (other.kind, other.provider_event_id, other.data) == (
        "unsupported",
        "update:5",
        {"type": "poll"},
    )


def test_telegram_handshake_is_not_found() -> None:
    with pytest.raises(NotFound):
        TelegramChannel().handshake(_request({}), _context())


def test_telegram_parse_refuses_a_non_object_body() -> None:
    request = RawRequest(body=b"42", headers={}, query={}, url="", received_at=datetime.now(tz=UTC))
    with pytest.raises(InvalidPayload):
        TelegramChannel().parse_inbound(request, _context())


def test_telegram_split_counts_utf16_units_and_never_cuts_a_character() -> None:
    text = "😀" * 3000  # 6000 UTF-16 units
    parts = split_text(text)
    assert "".join(parts) == text
    assert all(utf16_len(p) <= 4096 for p in parts)
    assert [len(p) for p in parts] == [2048, 952]
    assert split_text("hola") == ["hola"]
    assert split_text("a" * 4096) == ["a" * 4096]
    lines = ("x" * 99 + "\n") * 50
    assert all(p.endswith("\n") for p in split_text(lines)[:-1])
