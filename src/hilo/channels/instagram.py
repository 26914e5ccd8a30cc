"""Instagram messaging (Meta's Messenger Platform): webhooks in, Send API out.

Inbound: ``POST /webhooks/instagram/{channel_id}``, ``{"object": "instagram", …}`` signed
with ``X-Hub-Signature-256``; set-up with Meta's ``hub.challenge`` GET. Outbound:
``POST {api_base_url}/{instagram_account_id}/messages`` with the access token, on
``graph.instagram.com`` (the Instagram API with Instagram Login) by default. The customer
is known by their Instagram-scoped id (IGSID). Instagram sends read receipts
(``messaging_seen``) but no delivery receipts. The shared rules live in
:mod:`hilo.channels.meta_messaging`.
"""

from __future__ import annotations

from typing import ClassVar

from hilo.channels.meta_messaging import MetaMessagingChannel
from hilo.i18n import _

# Meta's limit on an Instagram text, in bytes of UTF-8.
MAX_TEXT_BYTES = 1000
# Meta documents ``/{IG account id}/messages`` on this host (the Instagram API with Instagram
# Login); graph.facebook.com sends for Instagram only from the linked Page's id.
DEFAULT_API_BASE_URL = "https://graph.instagram.com/v21.0"


class InstagramChannel(MetaMessagingChannel):
    type: ClassVar[str] = "instagram"
    label: ClassVar[str] = "Instagram"
    setup_help: ClassVar[str] = _(
        "In Meta's developer console, add the webhook address under Instagram > Webhooks "
        "with your verify token, and subscribe to messages."
    )
    identity_kind: ClassVar[str] = "instagram"
    webhook_object: ClassVar[str] = "instagram"
    account_key: ClassVar[str] = "instagram_account_id"
    credential_key: ClassVar[str] = "access_token"
    default_api_base_url: ClassVar[str] = DEFAULT_API_BASE_URL

    def text_problem(self, text: str) -> str | None:
        size = len(text.encode())
        if size > MAX_TEXT_BYTES:
            return (
                f"the text is {size} bytes of UTF-8; "
                f"Instagram allows {MAX_TEXT_BYTES} in one message"
            )
        return None
