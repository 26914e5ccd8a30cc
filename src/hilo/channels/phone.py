"""Phone numbers as carriers and phone platforms deliver them: E.164 or nothing."""

from __future__ import annotations

import re

from hilo.contacts.service import normalise_phone

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_PHONE_PUNCTUATION = re.compile(r"[\s().-]")


def e164(raw: str) -> str | None:
    """A phone number in E.164 (``+`` and digits), normalised; None for anything else.

    Only numbers written with their country code count: a short code, an alphanumeric
    sender id or a ``sip:`` URI is not a phone to join a contact on.
    """
    value = _PHONE_PUNCTUATION.sub("", raw)
    if not _E164.match(value):
        return None
    return normalise_phone(value, "ZZ")


def is_e164(value: str) -> bool:
    """Whether ``value`` is already written in E.164."""
    return bool(_E164.match(value))
