"""Opt-out keywords are honoured at once on channels that support them (here, Telegram)."""

from __future__ import annotations

from tests.channels.test_telegram import Bot, bot, fake_api  # noqa: F401  (fixtures)


def test_baja_opts_out_at_once_confirms_and_refuses_later_replies(bot: Bot) -> None:  # noqa: F811
    bot.post(bot.text_update("Hola, quiero info", 1))
    conversation_id = bot.conversation_of("Hola, quiero info")
    bot.post(bot.text_update(" baja ", 2))
    confirmation = bot.wait_status_of_text(conversation_id, "Ya no recibirás")
    assert confirmation["sender_type"] == "system"
    assert len(bot.fake.requests) == 1
    assert "ALTA" in bot.fake.requests[0]["json"]["text"]
    refused = bot.api.post(
        f"/api/v1/conversations/{conversation_id}/messages", json={"text": "¿Sigue ahí?"}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "contact_opted_out"
    trail = bot.api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
    assert "contact.opted_out" in [e["type"] for e in trail]


def test_alta_opts_back_in(bot: Bot) -> None:  # noqa: F811
    bot.post(bot.text_update("STOP", 1))
    conversation_id = bot.conversation_of("STOP")
    bot.wait_status_of_text(conversation_id, "Ya no recibirás")
    bot.post(bot.text_update("ALTA", 2))
    bot.wait_status_of_text(conversation_id, "Vuelves a estar suscrito")
    again = bot.reply(conversation_id, "Bienvenido de nuevo")
    bot.wait_status(conversation_id, again["id"], "sent")


def test_a_sentence_containing_stop_is_just_a_message(bot: Bot) -> None:  # noqa: F811
    bot.post(bot.text_update("Please stop the car rental renewal", 1))
    conversation_id = bot.conversation_of("Please stop the car rental renewal")
    reply = bot.reply(conversation_id, "Done")
    bot.wait_status(conversation_id, reply["id"], "sent")
