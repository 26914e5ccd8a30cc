"""Facebook Messenger (Meta's Messenger Platform): Page webhooks in, Send API out.

Inbound: ``POST /webhooks/messenger/{channel_id}``, ``{"object": "page", …}`` signed with
``X-Hub-Signature-256``; set-up with Meta's ``hub.challenge`` GET. Outbound:
``POST {api_base_url}/{page_id}/messages`` with the Page access token. The customer is known
by their page-scoped id (PSID). The shared rules live in :mod:`hilo.channels.meta_messaging`.
"""

from __future__ import annotations

from typing import ClassVar

from hilo.channels.meta_messaging import MetaMessagingChannel
from hilo.i18n import _

# Meta's limit on a Messenger text, in characters.
MAX_TEXT_CHARS = 2000


class MessengerChannel(MetaMessagingChannel):
    type: ClassVar[str] = "messenger"
    label: ClassVar[str] = "Messenger"
    setup_help: ClassVar[str] = _(
        "In Meta's developer console, add the webhook address under Messenger > Settings "
        "with your verify token, and subscribe the page to messages and deliveries."
    )
    identity_kind: ClassVar[str] = "messenger"
    webhook_object: ClassVar[str] = "page"
    account_key: ClassVar[str] = "page_id"
    credential_key: ClassVar[str] = "page_access_token"

    def text_problem(self, text: str) -> str | None:
        if len(text) > MAX_TEXT_CHARS:
            return (
                f"the text has {len(text)} characters; "
                f"Messenger allows {MAX_TEXT_CHARS} in one message"
            )
        return None
