"""Plus-addressing (RFC 5233): signed reply tokens and bounce addresses.

Hilo's replies carry ``Reply-To: support+c<conversation>.<hmac>@domain``, so the customer's
answer names its conversation even when their client drops ``In-Reply-To``; the envelope
sender is ``support+b<message>.<hmac>@domain`` (VERP), so a bounce names the message it is
about even when it quotes nothing of it. Both are signed with a key derived from
``HILO_SECRET_KEY`` and bound to the channel: nobody can forge a token to write into a
conversation, and a token is worthless on another channel.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass

from hilo.crypto import constant_time_equal, internal_hmac

CONVERSATION = "c"
BOUNCE = "b"
_MAC_CHARS = 12
MAX_LOCAL_PART = 64


def split(address: str) -> tuple[str, str | None, str]:
    """``(local, tag, domain)`` of ``local+tag@domain``; tag None without a ``+``."""
    local, _sep, domain = address.strip().lower().rpartition("@")
    base, plus, tag = local.partition("+")
    return base, (tag if plus else None), domain


def base(address: str) -> str:
    """The address without its plus tag: what a channel is configured with."""
    local, _tag, domain = split(address)
    return f"{local}@{domain}"


def with_tag(address: str, tag: str) -> str | None:
    """``local+tag@domain``, or None when the local part would exceed 64 characters."""
    local, _tag, domain = split(address)
    if len(local) + 1 + len(tag) > MAX_LOCAL_PART:
        return None
    return f"{local}+{tag}@{domain}"


def _mac(kind: str, channel_id: uuid.UUID, object_id: uuid.UUID) -> str:
    return internal_hmac("email-address-token", f"{kind}:{channel_id}:{object_id}")[:_MAC_CHARS]


def make_token(kind: str, channel_id: uuid.UUID, object_id: uuid.UUID) -> str:
    """A signed tag naming a conversation (``c``) or an outbound message (``b``)."""
    encoded = base64.b32encode(object_id.bytes).decode().rstrip("=").lower()
    return f"{kind}{encoded}.{_mac(kind, channel_id, object_id)}"


@dataclass(frozen=True)
class Token:
    kind: str
    object_id: uuid.UUID


def read_token(tag: str | None, channel_id: uuid.UUID) -> Token | None:
    """The object a tag names, if its signature holds for this channel."""
    if not tag or "." not in tag:
        return None
    head, _dot, mac = tag.lower().partition(".")
    kind, encoded = head[:1], head[1:]
    if kind not in (CONVERSATION, BOUNCE) or len(encoded) != 26:
        return None
    try:
        object_id = uuid.UUID(bytes=base64.b32decode(encoded.upper() + "======"))
    except (binascii.Error, ValueError):
        return None
    if not constant_time_equal(_mac(kind, channel_id, object_id), mac):
        return None
    return Token(kind, object_id)
