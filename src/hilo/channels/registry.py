"""The one list of channel adapters. Adding a channel is adding its module here."""

from __future__ import annotations

from hilo.channels.api import ApiChannel
from hilo.channels.base import ChannelAdapter
from hilo.channels.email import EmailChannel
from hilo.channels.form import FormChannel
from hilo.channels.instagram import InstagramChannel
from hilo.channels.messenger import MessengerChannel
from hilo.channels.rcs import RcsChannel
from hilo.channels.sms import SmsChannel
from hilo.channels.telegram import TelegramChannel
from hilo.channels.voice import VoiceChannel
from hilo.channels.webchat import WebchatChannel
from hilo.channels.whatsapp import WhatsAppChannel
from hilo.errors import InvalidPayload, NotFound
from hilo.i18n import _

ADAPTERS: dict[str, ChannelAdapter] = {
    adapter.type: adapter
    for adapter in (
        ApiChannel(),
        TelegramChannel(),
        WhatsAppChannel(),
        SmsChannel(),
        MessengerChannel(),
        InstagramChannel(),
        VoiceChannel(),
        RcsChannel(),
        EmailChannel(),
        WebchatChannel(),
        FormChannel(),
    )
}


def get_adapter(channel_type: str) -> ChannelAdapter:
    """The adapter of ``channel_type``; unknown types are a 404 for webhooks."""
    adapter = ADAPTERS.get(channel_type)
    if adapter is None:
        raise NotFound(_("Unknown channel type."), code="unknown_channel_type")
    return adapter


def adapter_for_new_channel(channel_type: str) -> ChannelAdapter:
    """The adapter for a channel being created; unknown types are invalid input."""
    adapter = ADAPTERS.get(channel_type)
    if adapter is None:
        raise InvalidPayload(
            _("Unknown channel type. Known types: {types}."),
            code="unknown_channel_type",
            types=", ".join(sorted(ADAPTERS)),
        )
    return adapter
