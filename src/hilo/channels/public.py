"""What the public channels (the chat widget, web forms) share: the sites that may use them
(``allowed_origins``), their secret, and how their settings are checked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from hilo.crypto import new_secret
from hilo.errors import Forbidden, InvalidPayload
from hilo.i18n import _

MAX_ORIGINS = 50
MIN_SECRET = 16


def normalise_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case, or None when ``value`` is not an origin."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def validate_allowed_origins(value: Any) -> list[str]:
    """The configured origins, normalised; raise ``InvalidPayload`` on anything else."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or len(value) > MAX_ORIGINS:
        raise InvalidPayload(
            _("allowed_origins must be a list of at most {count} origins."),
            code="invalid_config",
            count=MAX_ORIGINS,
        )
    origins: list[str] = []
    for item in value:
        origin = normalise_origin(item) if isinstance(item, str) else None
        if origin is None:
            raise InvalidPayload(
                _("allowed_origins holds web origins such as https://www.example.com."),
                code="invalid_config",
            )
        if origin not in origins:
            origins.append(origin)
    return origins


def request_origin(headers: Mapping[str, str]) -> str | None:
    """The origin a browser says the request comes from (``Origin``, else ``Referer``)."""
    for name in ("origin", "referer"):
        raw = headers.get(name)
        if raw and raw != "null":
            parts = urlsplit(raw)
            return normalise_origin(f"{parts.scheme}://{parts.netloc}")
    return None


def check_origin(config: Mapping[str, Any], headers: Mapping[str, str]) -> None:
    """Refuse a browser request from a site not in ``allowed_origins`` (empty: any site).

    Requests without ``Origin`` or ``Referer`` (servers, scripts) pass: they could claim any
    origin anyway; the list keeps other web sites from using the channel in browsers.
    """
    allowed = config.get("allowed_origins") or []
    if not allowed:
        return
    if headers.get("origin") == "null":
        raise Forbidden(_("This site may not use this channel."), code="origin_not_allowed")
    origin = request_origin(headers)
    if origin is not None and origin not in allowed:
        raise Forbidden(_("This site may not use this channel."), code="origin_not_allowed")


def validate_secret(config: Mapping[str, Any]) -> str:
    """The channel's secret as given (at least 16 characters), or a new random one."""
    secret = config.get("secret") or new_secret()
    if not isinstance(secret, str) or len(secret) < MIN_SECRET:
        raise InvalidPayload(_("secret must have at least 16 characters."), code="invalid_config")
    return secret


def validate_int(config: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    """A whole-number setting within ``low``..``high``."""
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidPayload(
            _("{key} must be a whole number from {low} to {high}."),
            code="invalid_config",
            key=key,
            low=low,
            high=high,
        )
    return value


def validate_bool(config: Mapping[str, Any], key: str, default: bool) -> bool:
    """A true/false setting."""
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise InvalidPayload(_("{key} must be true or false."), code="invalid_config", key=key)
    return value
