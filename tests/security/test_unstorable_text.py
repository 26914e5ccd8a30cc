"""Text no database can store (NUL characters) is bad input: a 4xx or dropped, never a 500.

PostgreSQL refuses NUL in ``text`` and ``jsonb`` where SQLite stores it, so each case runs on
both and must behave the same way a user can notice.
"""

from __future__ import annotations

from tests.conftest import Api, wait_for
from tests.core.test_api_channel import create_channel, message, message_visible, timeline
from tests.helpers import post_api_message


def test_a_provider_message_with_nul_characters_is_stored_without_them(api: Api) -> None:
    channel = create_channel(api)
    sent = message("cliente-nul", "Hola\x00 mundo", name="Ana\x00 Gil")
    response = post_api_message(api, channel["id"], channel["secret"], sent)
    assert response.status_code == 200, response.text
    contact = wait_for(lambda: message_visible(api, response.json()["message_id"]))
    assert contact["name"] == "Ana Gil"
    assert [item["text"] for item in timeline(api, contact["id"])] == ["Hola mundo"]


def test_a_nul_character_in_an_api_query_is_a_4xx_not_a_500(api: Api) -> None:
    for path in ("/api/v1/contacts?email=ana%00@example.org", "/api/v1/contacts?q=ana%00"):
        response = api.get(path)
        assert response.status_code < 500, (path, response.text)
