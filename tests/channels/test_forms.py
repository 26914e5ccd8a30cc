"""Web forms end to end: an HTML form posted to Hilo, on SQLite and PostgreSQL.

Posts are made as a browser makes them (``application/x-www-form-urlencoded`` or
``multipart/form-data``, with ``Origin`` and ``Referer``), without following the redirect.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from hilo.channels.api import sign
from hilo.channels.form import form_token
from tests.channels.test_webchat import (
    Mailbox,
    contact_with,
    conversation_of,
    create,
    create_email_channel,
    mailbox,  # noqa: F401 - the fixture
    reply,
    wait_message,
)
from tests.conftest import Api, wait_for
from tests.core.test_api_channel import create_channel, message, timeline
from tests.helpers import post_api_message
from tests.realtime.test_stream import new_ticket, recv_until, ws_connect

SITE = "https://shop.example"
PAGE = f"{SITE}/contacto"


def create_form(api: Api, **config: Any) -> dict[str, Any]:
    return create(api, "form", "Contacto", config)


def submit(
    api: Api,
    channel: dict[str, Any],
    fields: dict[str, str],
    *,
    files: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST the form as a browser on the company's site does (the redirect is not followed)."""
    return httpx.post(
        channel["webhook_url"],
        data=fields,
        files=files,
        headers={"Origin": SITE, "Referer": PAGE, "Accept": "text/html", **(headers or {})},
        timeout=15,
    )


def stored(response: httpx.Response) -> str:
    """The message id of a post, asked for as a script would (Accept: application/json)."""
    assert response.status_code == 200, response.text
    return str(response.json()["message_id"])


def as_script(api: Api, channel: dict[str, Any], fields: dict[str, str]) -> httpx.Response:
    return submit(api, channel, fields, headers={"Accept": "application/json"})


def test_form_post_opens_a_conversation_and_redirects_to_the_thank_you_page(api: Api) -> None:
    channel = create_form(api, thank_you_url=f"{SITE}/gracias")
    assert channel["webhook_url"].endswith(f"/webhooks/form/{channel['id']}")
    fields = {
        "name": "Marta Ruiz",
        "email": "Marta@Example.com",
        "phone": "612 345 678",
        "message": "Quiero alquilar una furgoneta en julio",
        "fechas": "1-15 julio",
        "_idempotency_key": f"k-{uuid.uuid4().hex}",
    }
    response = submit(api, channel, fields)
    assert response.status_code == 303
    assert response.headers["location"] == f"{SITE}/gracias"
    again = as_script(api, channel, fields)
    contact = contact_with(api, stored(again))
    assert contact["name"] == "Marta Ruiz"
    by_kind = {i["kind"]: i for i in contact["identities"]}
    # Typed in a form: unverified, every one.
    assert by_kind["email"] == {
        "kind": "email",
        "value": "marta@example.com",
        "verified": False,
        "channel_id": None,
    }
    assert by_kind["phone"]["value"] == "+34612345678" and not by_kind["phone"]["verified"]
    assert by_kind["form"]["verified"] is False
    [item] = timeline(api, contact["id"])
    assert item["text"] == "Quiero alquilar una furgoneta en julio"
    assert item["channel_id"] == channel["id"]
    assert item["data"]["fields"] == {"fechas": "1-15 julio"}
    assert item["data"]["page_url"] == PAGE


def test_a_later_post_with_the_same_email_continues_the_conversation(api: Api) -> None:
    channel = create_form(api)
    email = f"r-{uuid.uuid4().hex[:6]}@example.com"
    first = stored(as_script(api, channel, {"email": email, "message": "Primera consulta"}))
    second = stored(as_script(api, channel, {"email": email, "message": "Se me olvidó algo"}))
    contact = contact_with(api, second)
    assert contact_with(api, first)["id"] == contact["id"]
    items = timeline(api, contact["id"])
    assert [i["text"] for i in items] == ["Primera consulta", "Se me olvidó algo"]
    assert len({i["conversation_id"] for i in items}) == 1


def test_multipart_form_is_read_and_files_are_listed_not_kept(api: Api) -> None:
    channel = create_form(api)
    response = submit(
        api,
        channel,
        {"name": "Íñigo", "email": "inigo@example.com", "message": "Adjunto el parte del golpe"},
        files={"parte": ("parte.pdf", b"%PDF-1.4 golpe", "application/pdf")},
        headers={"Accept": "application/json"},
    )
    contact = contact_with(api, stored(response))
    assert contact["name"] == "Íñigo"
    [item] = timeline(api, contact["id"])
    assert item["text"] == "Adjunto el parte del golpe"
    assert item["data"]["files"] == [
        {"field": "parte", "file_name": "parte.pdf", "mime_type": "application/pdf", "size": 14}
    ]


def test_a_form_post_with_nul_characters_is_stored_without_them(api: Api) -> None:
    # PostgreSQL refuses NUL in text and JSONB: the post must still be stored, not a 500.
    channel = create_form(api)
    fields = {"name": "Ana\x00 Gil", "message": "Hola\x00, ¿abrís?", "modelo": "\x00Ibiza"}
    contact = contact_with(api, stored(as_script(api, channel, fields)))
    assert contact["name"] == "Ana Gil"
    [item] = timeline(api, contact["id"])
    assert item["text"] == "Hola, ¿abrís?"
    assert item["data"]["fields"] == {"modelo": "Ibiza"}


def test_filled_honeypot_is_answered_as_usual_and_dropped(api: Api) -> None:
    channel = create_form(api, thank_you_url=f"{SITE}/gracias")
    bot = submit(api, channel, {"message": "Buy cheap watches", "_gotcha": "http://spam.example"})
    assert bot.status_code == 303 and bot.headers["location"] == f"{SITE}/gracias"
    assert as_script(api, channel, {"message": "spam", "_gotcha": "x"}).json() == {"stored": False}
    time.sleep(0.3)
    assert api.get("/api/v1/contacts").json()["items"] == []


def test_double_submit_is_one_message(api: Api) -> None:
    channel = create_form(api)
    key = {"_idempotency_key": f"k-{uuid.uuid4().hex}"}
    fields = {"email": "doble@example.com", "message": "Hola", **key}
    first = as_script(api, channel, fields).json()
    again = as_script(api, channel, fields).json()
    assert again == {**first, "duplicate": True}
    # Without a key, the same fields within the hour are the same submission too.
    plain = {"email": "doble@example.com", "message": "Otra cosa"}
    one, two = as_script(api, channel, plain).json(), as_script(api, channel, plain).json()
    assert one["message_id"] == two["message_id"] and two["duplicate"] is True
    contact = contact_with(api, one["message_id"])
    time.sleep(0.3)
    assert [i["text"] for i in timeline(api, contact["id"])] == ["Hola", "Otra cosa"]


def test_without_a_thank_you_url_hilo_thanks_in_the_visitors_language(api: Api) -> None:
    channel = create_form(api)
    spanish = submit(
        api, channel, {"message": "¿Abrís en festivo?"}, headers={"Accept-Language": "es-MX"}
    )
    assert spanish.status_code == 200
    assert spanish.headers["content-type"].startswith("text/html")
    assert '<html lang="es">' in spanish.text and "¡Gracias!" in spanish.text
    english = submit(
        api, channel, {"message": "Open on holidays?"}, headers={"Accept-Language": "en-GB"}
    )
    assert '<html lang="en">' in english.text and "Thank you!" in english.text


def test_typed_email_on_a_form_is_a_merge_suggestion_not_a_join(api: Api) -> None:
    app = create_channel(api)
    known = post_api_message(
        api, app["id"], app["secret"], message("crm-1", "Alta", email="sara@example.com")
    )
    customer = contact_with(api, known.json()["message_id"])
    channel = create_form(api)
    posted = stored(as_script(api, channel, {"email": "sara@example.com", "message": "Soy Sara"}))
    stranger = contact_with(api, posted)
    assert stranger["id"] != customer["id"]
    with ws_connect(api.base_url, new_ticket(api), last_event_id=0) as stream:
        suggested = recv_until(stream, lambda e: e["type"] == "contact.merge_suggested", [])
    assert suggested["contact_id"] == stranger["id"]
    assert suggested["data"]["candidate_id"] == customer["id"]
    assert [i["text"] for i in timeline(api, customer["id"])] == ["Alta"]


def test_form_posted_from_another_site_is_refused(api: Api) -> None:
    channel = create_form(api, allowed_origins=[SITE])
    response = submit(
        api,
        channel,
        {"message": "hola"},
        headers={"Origin": "https://evil.example", "Referer": "https://evil.example/"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"
    assert submit(api, channel, {"message": "hola"}).status_code == 200


def test_signed_form_needs_a_fresh_token_or_a_server_signature(api: Api) -> None:
    channel = create_form(api, require_signature=True, secret="form-secret-0123456789")
    unsigned = as_script(api, channel, {"message": "hola"})
    assert unsigned.status_code == 401
    now = int(time.time())
    token = {"_ts": str(now), "_sig": form_token("form-secret-0123456789", now)}
    assert as_script(api, channel, {"message": "con token", **token}).status_code == 200
    forged = {"_ts": str(now), "_sig": "0" * 64}
    assert as_script(api, channel, {"message": "falso", **forged}).status_code == 401
    old = now - 2 * 24 * 3600
    stale = {"_ts": str(old), "_sig": form_token("form-secret-0123456789", old)}
    refused = as_script(api, channel, {"message": "viejo", **stale})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "stale_timestamp"
    # A company's server posting the form signs the body as on the API channel.
    body = b"message=desde+el+servidor&email=srv%40example.com"
    stamp = str(int(time.time()))
    signed = httpx.post(
        channel["webhook_url"],
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "X-Hilo-Timestamp": stamp,
            "X-Hilo-Signature": sign("form-secret-0123456789", stamp, body),
        },
    )
    assert signed.status_code == 200, signed.text


def test_bad_posts_get_a_clear_4xx(api: Api) -> None:
    channel = create_form(api)
    empty = as_script(api, channel, {"name": "Sin mensaje"})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_message"
    as_json = httpx.post(channel["webhook_url"], json={"message": "hola"})
    assert as_json.status_code == 422 and as_json.json()["error"]["code"] == "invalid_form"
    latin1 = httpx.post(
        channel["webhook_url"],
        content=b"message=%E1rbol",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert latin1.status_code == 422
    unknown = httpx.post(
        channel["webhook_url"].replace(channel["id"], str(uuid.uuid4())), data={"message": "x"}
    )
    assert unknown.status_code == 404
    too_long = as_script(api, channel, {"message": "x" * 10_001})
    assert too_long.status_code == 422


def test_reply_to_a_form_goes_out_by_email(api: Api, mailbox: Mailbox) -> None:  # noqa: F811
    create_email_channel(api, mailbox.port)
    channel = create_form(api)
    posted = stored(
        as_script(api, channel, {"email": "hugo@example.org", "message": "¿Precio por día?"})
    )
    contact = contact_with(api, posted)
    conversation_id = conversation_of(api, contact["id"])
    answer = reply(api, conversation_id, "35 € al día")
    done = wait_message(api, conversation_id, answer["id"], lambda m: "email_fallback" in m["data"])
    assert done["data"]["email_fallback"]["status"] == "queued"
    wait_for(lambda: mailbox.received, message="the answer reaches the relay")
    assert mailbox.received[0].rcpt_tos == ["hugo@example.org"]
