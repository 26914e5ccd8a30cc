"""Checks every adapter makes of its configuration and payloads, worded once."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from hilo.errors import InvalidPayload
from hilo.i18n import _


def text(value: Any) -> str:
    """A configuration or payload value as a string ("" for None)."""
    return value if isinstance(value, str) else ("" if value is None else str(value))


def base_url(config: dict[str, Any], default: str) -> str | None:
    """The channel's ``api_base_url`` (``default`` when unset), or None when it is no URL."""
    base = text(config.get("api_base_url")).strip() or default
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return base.rstrip("/")


def invalid_payload(*fields: str) -> InvalidPayload:
    """A 422 naming the payload fields that are missing or wrong."""
    return InvalidPayload(
        _("Invalid payload: check the fields {fields}."),
        code="invalid_payload",
        fields=", ".join(fields),
    )


def invalid_config(wrong: list[str]) -> InvalidPayload:
    """A 422 naming the ``config.*`` fields that are wrong."""
    return InvalidPayload(
        _("Invalid payload: check the fields {fields}."),
        code="invalid_config",
        fields=", ".join(f"config.{name}" for name in wrong),
    )
