"""What every Twilio channel shares: its credentials, its form webhooks and their signature.

Twilio POSTs ``application/x-www-form-urlencoded`` parameters and signs them with
``X-Twilio-Signature: base64(HMAC-SHA1(auth_token, url + sorted params))``, where ``url`` is
the public URL Twilio called (:attr:`RawRequest.url`, rebuilt from ``HILO_PUBLIC_URL`` or
``X-Forwarded-Proto/Host``). SMS/MMS (``sms.py``) and Voice (``voice.py``) use the same
account SID, auth token and number, checked here once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from hilo.channels.base import ChannelContext, NoSetupCheck, RawRequest
from hilo.channels.checks import base_url, invalid_payload, text
from hilo.channels.checks import invalid_config as invalid_config
from hilo.channels.phone import e164
from hilo.crypto import constant_time_equal
from hilo.errors import InvalidSignature

DEFAULT_API_BASE_URL = "https://api.twilio.com"
SIGNATURE_HEADER = "x-twilio-signature"
# What Twilio expects back from a webhook that needs no action: TwiML that does nothing.
EMPTY_TWIML = "<Response/>"

# A 422 naming the form parameters that are missing or wrong.
invalid = invalid_payload

_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for a POST of ``params`` to ``url``.

    Names sorted; each name's values sorted and de-duplicated, as Twilio's own
    ``RequestValidator.compute_signature`` does.
    """
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    signed = url + "".join(
        name + value for name in sorted(values) for value in sorted(values[name])
    )
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_variants(url: str) -> list[str]:
    """``url`` as given, and with its default port added or removed.

    Twilio signs the URL as configured, which may or may not spell ``:443``/``:80``; its
    own validator accepts both, and so does Hilo.
    """
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    variants = [url]
    if default is None or not parts.hostname:
        return variants
    try:
        port = parts.port
    except ValueError:
        return variants
    userinfo, at, host = parts.netloc.rpartition("@")
    bare = userinfo + at + (host.rsplit(":", 1)[0] if port is not None else host)
    if port is None:
        variants.append(urlunsplit(parts._replace(netloc=f"{bare}:{default}")))
    elif port == default:
        variants.append(urlunsplit(parts._replace(netloc=bare)))
    return variants


def inbound_sms_params(
    *,
    sid: str,
    account_sid: str,
    sender: str,
    to: str,
    text: str,
    to_country: str,
    from_country: str,
    segments: int = 1,
) -> dict[str, str]:
    """The form Twilio posts for an inbound SMS, every field it sends (the demo's and the
    benchmark's deliveries are built with it)."""
    return {
        "ToCountry": to_country,
        "ToState": "",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": text,
        "FromCountry": from_country,
        "To": to,
        "ToZip": "",
        "NumSegments": str(segments),
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": sender,
        "ApiVersion": "2010-04-01",
    }


def form(body: bytes) -> list[tuple[str, str]]:
    """The form parameters of a body, in order, repeats kept; ValueError when not a form."""
    return parse_qsl(
        body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body), errors="strict"
    )


def verify_signature(request: RawRequest, channel: ChannelContext) -> None:
    """Check ``X-Twilio-Signature`` with the channel's auth token; raise when it fails."""
    given = request.headers.get(SIGNATURE_HEADER, "").strip()
    auth_token = text(channel.secrets.get("auth_token"))
    if not given or not auth_token:
        raise InvalidSignature()
    try:
        params = form(request.body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidSignature() from exc
    matched = False
    for url in url_variants(request.url):
        # Every variant is computed and compared, so timing says nothing about which.
        matched |= constant_time_equal(signature(auth_token, url, params), given)
    if not matched:
        raise InvalidSignature()


def check_account(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The Twilio account part of a channel's config: (shown, encrypted, wrong field names).

    ``account_sid`` (``AC`` + 32 hex), ``auth_token``, ``phone_number`` (E.164) and an
    optional ``api_base_url``.
    """
    wrong: list[str] = []
    account_sid = text(config.get("account_sid")).strip()
    if not _ACCOUNT_SID.match(account_sid):
        wrong.append("account_sid")
    auth_token = text(config.get("auth_token")).strip()
    if not auth_token or len(auth_token) > 256 or any(c.isspace() for c in auth_token):
        wrong.append("auth_token")
    phone_number = e164(text(config.get("phone_number")))
    if phone_number is None:
        wrong.append("phone_number")
    base = base_url(config, DEFAULT_API_BASE_URL)
    if base is None:
        wrong.append("api_base_url")
    shown = {"account_sid": account_sid, "phone_number": phone_number, "api_base_url": base}
    return shown, {"auth_token": auth_token}, wrong


class TwilioWebhook(NoSetupCheck):
    """What every Twilio channel's webhook does alike: Twilio's signature, no GET check."""

    def verify(self, request: RawRequest, channel: ChannelContext) -> None:
        verify_signature(request, channel)
