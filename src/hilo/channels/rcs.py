"""RCS Business Messaging (Google RBM): signed Pub/Sub-style envelopes in, agentMessages out.

Inbound: Google POSTs ``{"message": {"data": <base64 event JSON>, "messageId", "publishTime",
"attributes"}, "subscription"}`` to ``/webhooks/rcs/{channel_id}`` with
``X-Goog-Signature: base64(HMAC-SHA512(client_token, base64decode(message.data)))``.
When the webhook is configured in the RBM console, Google first POSTs
``{"clientToken", "secret"}``; Hilo checks the client token and echoes the secret as plain
text.

The decoded event is a user message (``text``, ``suggestionResponse``, ``userFile``,
``location``; dedup key: its ``messageId``, else its ``eventId``) or a user event
(``eventType`` DELIVERED, READ, IS_TYPING; dedup key: its ``eventId``). Receipts name our
message by the ``messageId`` we chose when sending, and only move it forward.

Outbound: ``POST {api_base_url}/v1/phones/{E.164}/agentMessages?messageId=<uuid>&agentId=…``
with ``{"contentMessage": {"text": …}}`` and an OAuth2 bearer token: one minted from the
channel's service-account key (JWT bearer grant, scope ``rcsbusinessmessaging``), or a fixed
``access_token``. The ``messageId`` is the reply's own id, RBM's idempotency key: a retried
send that already went through is ignored by RBM.

The sender is their phone number in E.164, a workspace-wide ``phone`` identity shared with
SMS, WhatsApp and voice: RBM vouches for the number, as the carrier does for an SMS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from hilo.channels.base import (
    ChannelContext,
    ChannelSetup,
    InboundItem,
    IngestResult,
    NoSetupCheck,
    OutboundMessage,
    PlainText,
    RawRequest,
    Sender,
    SendError,
    SendResult,
)
from hilo.channels.checks import base_url, invalid_config, invalid_payload, text
from hilo.channels.phone import e164, is_e164
from hilo.channels.telegram import split_text
from hilo.crypto import constant_time_equal
from hilo.errors import InvalidSignature
from hilo.i18n import _

log = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://rcsbusinessmessaging.googleapis.com"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
SCOPE = "https://www.googleapis.com/auth/rcsbusinessmessaging"
SIGNATURE_HEADER = "x-goog-signature"
# Google documents no hard limit; 3072 characters is the figure integrators work with.
MAX_TEXT = 3072
RECEIPTS = {"DELIVERED": "delivered", "READ": "read"}
# A minted token is used until this many seconds before it expires.
TOKEN_MARGIN_SECONDS = 300

Json = dict[str, Any]


def sign(client_token: str, data: bytes) -> str:
    """The ``X-Goog-Signature`` RBM sends for an envelope whose decoded data is ``data``."""
    digest = hmac.new(client_token.encode(), data, hashlib.sha512).digest()
    return base64.b64encode(digest).decode()


def _agent(agent_id: str) -> str:
    """An agent id as the API takes it: events spell it ``<id>@rbm.goog``."""
    return agent_id.strip().removesuffix("@rbm.goog")


def _json_body(body: bytes) -> Json | None:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _is_handshake(body: Json) -> bool:
    return "clientToken" in body and "secret" in body and "message" not in body


def _envelope_data(body: Json) -> bytes | None:
    """The decoded ``message.data`` of an envelope, or None when it has none."""
    message = body.get("message")
    data = message.get("data") if isinstance(message, dict) else None
    if not isinstance(data, str) or not data:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def _sent_at(raw: Any) -> str | None:
    """RBM's RFC 3339 ``sendTime`` (nanoseconds allowed) as ISO 8601, or None."""
    try:
        when = datetime.fromisoformat(text(raw))
    except ValueError:
        return None
    return when.isoformat() if when.tzinfo else None


def _load_service_account(raw: Any) -> Json | None:
    """A service-account key (a JSON object or its text) whose private key loads, or None."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if not isinstance(raw, dict):
        return None
    email, key = text(raw.get("client_email")), text(raw.get("private_key"))
    token_uri = text(raw.get("token_uri")) or DEFAULT_TOKEN_URI
    if not email or urlsplit(token_uri).scheme not in ("http", "https"):
        return None
    try:
        private_key = serialization.load_pem_private_key(key.encode(), password=None)
    except (TypeError, ValueError):
        return None
    if not isinstance(private_key, rsa.RSAPrivateKey):
        return None
    return {
        "type": "service_account",
        "client_email": email,
        "private_key_id": text(raw.get("private_key_id")),
        "private_key": key,
        "token_uri": token_uri,
    }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def service_account_assertion(account: Json, *, issued_at: int) -> str:
    """The signed JWT (RS256) a service account exchanges for an access token."""
    header = {"alg": "RS256", "typ": "JWT", "kid": account.get("private_key_id") or None}
    claims = {
        "iss": account["client_email"],
        "scope": SCOPE,
        "aud": account["token_uri"],
        "iat": issued_at,
        "exp": issued_at + 3600,
    }
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    key = serialization.load_pem_private_key(account["private_key"].encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signed = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signed)}"


@dataclass
class _Token:
    value: str
    expires_at: float


# Minted tokens, per service account, for this process: one token serves every send.
_tokens: dict[tuple[str, str], _Token] = {}


async def _service_account_token(client: httpx.AsyncClient, account: Json) -> str:
    key = (account["client_email"], account["token_uri"])
    cached = _tokens.get(key)
    if cached is not None and cached.expires_at - TOKEN_MARGIN_SECONDS > time.time():
        return cached.value
    issued_at = int(time.time())
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": service_account_assertion(account, issued_at=issued_at),
    }
    try:
        response = await client.post(account["token_uri"], data=form)
    except httpx.HTTPError as exc:
        raise SendError(f"token request: {type(exc).__name__}: {exc}", retryable=True) from exc
    answer = _json_body(response.content) or {}
    token = text(answer.get("access_token"))
    if not response.is_success or not token:
        reason = text(answer.get("error_description") or answer.get("error")) or response.text
        raise SendError(
            f"Google refused the service account's token request "
            f"(HTTP {response.status_code}): {reason[:300]}",
            retryable=response.status_code >= 500 or response.status_code == 429,
            provider_error=answer or response.text[:2000],
        )
    expires_in = answer.get("expires_in")
    lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
    _tokens[key] = _Token(token, issued_at + lifetime)
    return token


def _retry_delay(error: Json) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "30s"``), or None."""
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and text(detail.get("@type")).endswith("RetryInfo"):
            raw = text(detail.get("retryDelay")).removesuffix("s")
            try:
                return max(float(raw), 0.0)
            except ValueError:
                return None
    return None


class RcsChannel(NoSetupCheck):
    type: ClassVar[str] = "rcs"
    label: ClassVar[str] = "RCS"
    setup_help: ClassVar[str] = _(
        "In Google's Business Communications console, open the agent's integrations and paste "
        "the webhook address with your client token; Google checks it with a secret echo."
    )
    providers: ClassVar[tuple[str, ...]] = ("google",)
    identity_kind: ClassVar[str] = "phone"
    identity_scope: ClassVar[str] = "workspace"
    supports_opt_out: ClassVar[bool] = True

    # -- set-up -------------------------------------------------------------------------

    def validate_config(self, provider: str, config: dict[str, Any]) -> ChannelSetup:
        wrong: list[str] = []
        agent_id = _agent(text(config.get("agent_id")))
        if not agent_id or len(agent_id) > 200 or any(c.isspace() for c in agent_id):
            wrong.append("agent_id")
        client_token = text(config.get("client_token")).strip()
        if not client_token or len(client_token) > 256 or any(c.isspace() for c in client_token):
            wrong.append("client_token")
        secrets: Json = {"client_token": client_token}
        if config.get("service_account") not in (None, ""):
            account = _load_service_account(config["service_account"])
            if account is None:
                wrong.append("service_account")
            secrets["service_account"] = account
        access_token = text(config.get("access_token")).strip()
        if access_token:
            secrets["access_token"] = access_token
        if "service_account" not in secrets and not access_token:
            wrong.append("service_account")
        base = base_url(config, DEFAULT_API_BASE_URL)
        if base is None:
            wrong.append("api_base_url")
        if wrong:
            raise invalid_config(wrong)
        return ChannelSetup(config={"agent_id": agent_id, "api_base_url": base}, secrets=secrets)

    # -- inbound ------------------------------------------------------------------------
    # RBM's set-up check is a POST (the secret echo), answered by acknowledge(); there is no
    # GET check (NoSetupCheck).

    def verify(self, request: RawRequest, channel: ChannelContext) -> None:
        client_token = text(channel.secrets.get("client_token"))
        body = _json_body(request.body)
        if not client_token or body is None:
            raise InvalidSignature()
        if _is_handshake(body):
            if not constant_time_equal(text(body["clientToken"]), client_token):
                raise InvalidSignature()
            return
        given = request.headers.get(SIGNATURE_HEADER, "").strip()
        data = _envelope_data(body)
        if not given or data is None:
            raise InvalidSignature()
        if not constant_time_equal(sign(client_token, data), given):
            raise InvalidSignature()

    def parse_inbound(self, request: RawRequest, channel: ChannelContext) -> list[InboundItem]:
        body = _json_body(request.body)
        if body is None:
            raise invalid_payload("body")
        if _is_handshake(body):
            secret = text(body["secret"])
            if not secret or len(secret) > 200:
                raise invalid_payload("secret")
            log.info("rbm webhook verified for channel %s", channel.id)
            return [
                InboundItem(
                    provider_event_id=f"webhook-verification:{secret}",
                    kind="unsupported",
                    data={"type": "webhook_verification"},
                    answer=secret,
                )
            ]
        data = _envelope_data(body)
        event = _json_body(data) if data is not None else None
        if event is None:
            raise invalid_payload("message.data")
        return [self._item(event, channel)]

    def _item(self, event: Json, channel: ChannelContext) -> InboundItem:
        event_id = text(event.get("eventId"))
        message_id = text(event.get("messageId"))
        event_type = text(event.get("eventType"))
        key = event_id if event_type else (message_id or event_id)
        if not key:
            raise invalid_payload("eventId" if event_type else "messageId")
        agent = _agent(text(event.get("agentId")))
        if agent and agent != text(channel.config.get("agent_id")):
            return _unsupported(key, "another_agent")
        if event_type:
            if event_type in RECEIPTS and message_id:
                return InboundItem(
                    provider_event_id=key,
                    kind="status",
                    sent_at=_sent_at(event.get("sendTime")),
                    data={"provider_message_id": message_id, "status": RECEIPTS[event_type]},
                )
            # IS_TYPING and the platform's own events: kept for the trail only.
            return _unsupported(key, event_type.lower())
        phone = e164(text(event.get("senderPhoneNumber")))
        if phone is None:
            raise invalid_payload("senderPhoneNumber")
        item = InboundItem(
            provider_event_id=key,
            kind="message",
            # RBM delivers from the user's own number: it vouches for it.
            sender=Sender(external_id=phone, phone_verified=True),
            sent_at=_sent_at(event.get("sendTime")),
        )
        if isinstance(event.get("text"), str):
            item.text = event["text"]
        elif isinstance(event.get("suggestionResponse"), dict):
            reply = event["suggestionResponse"]
            item.text = text(reply.get("text"))
            item.data = {
                "postback_data": text(reply.get("postbackData")),
                "suggestion_type": text(reply.get("type")),
            }
        elif isinstance(event.get("userFile"), dict):
            item.attachments = [_user_file(event["userFile"])]
        elif isinstance(event.get("location"), dict):
            place = event["location"]
            item.attachments = [
                {
                    "type": "location",
                    "latitude": place.get("latitude"),
                    "longitude": place.get("longitude"),
                }
            ]
        else:
            return _unsupported(key, "unknown_content")
        return item

    def acknowledge(self, results: list[IngestResult]) -> tuple[int, Any]:
        secret = next((r.answer for r in results if r.answer), None)
        if secret is not None:
            return 200, PlainText(secret)
        # Anything but a 200 makes Google back off for up to ten minutes, for every agent.
        return 200, {"ok": True}

    # -- outbound -----------------------------------------------------------------------

    async def send(
        self, client: httpx.AsyncClient, channel: ChannelContext, message: OutboundMessage
    ) -> SendResult:
        if not message.text.strip():
            raise SendError("the message has no text to send by RCS", retryable=False)
        if not is_e164(message.recipient):
            raise SendError(
                f"the recipient {message.recipient!r} is not an E.164 phone number",
                retryable=False,
            )
        token = await self._token(client, channel)
        base = text(channel.config.get("api_base_url")) or DEFAULT_API_BASE_URL
        url = f"{base.rstrip('/')}/v1/phones/{quote(message.recipient, safe='+')}/agentMessages"
        for index, part in enumerate(split_text(message.text, MAX_TEXT)):
            # Each part has its own stable id, so a retried reply resends nothing twice.
            part_id = uuid.uuid5(message.message_id, str(index)) if index else message.message_id
            await self._send_part(client, url, token, channel, str(part_id), part)
        return SendResult(provider_message_id=str(message.message_id))

    async def _token(self, client: httpx.AsyncClient, channel: ChannelContext) -> str:
        account = channel.secrets.get("service_account")
        if isinstance(account, dict):
            return await _service_account_token(client, account)
        token = text(channel.secrets.get("access_token"))
        if not token:
            raise SendError("the channel has no service_account or access_token", retryable=False)
        return token

    async def _send_part(
        self,
        client: httpx.AsyncClient,
        url: str,
        token: str,
        channel: ChannelContext,
        message_id: str,
        part: str,
    ) -> None:
        params = {"messageId": message_id, "agentId": text(channel.config.get("agent_id"))}
        try:
            response = await client.post(
                url,
                params=params,
                json={"contentMessage": {"text": part}},
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise SendError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        if response.is_success:
            return
        answer = _json_body(response.content) or {}
        error = answer.get("error") if isinstance(answer.get("error"), dict) else {}
        assert isinstance(error, dict)
        status = text(error.get("status"))
        if response.status_code == 409 and status == "ALREADY_EXISTS":
            # An earlier attempt with this messageId got through: nothing more to do.
            return
        error_text = f"RBM error {response.status_code}"
        if status:
            error_text += f" {status}"
        error_text += f": {text(error.get('message')) or response.text[:300]}"
        if response.status_code == 404:
            error_text += " (the user cannot be reached over RCS)"
        if response.status_code == 401 and isinstance(channel.secrets.get("service_account"), dict):
            # The minted token was revoked or expired early: mint a new one next time.
            account = channel.secrets["service_account"]
            _tokens.pop((account["client_email"], account["token_uri"]), None)
            raise SendError(error_text, retryable=True, provider_error=answer or None)
        retryable = response.status_code in (408, 429) or response.status_code >= 500
        raise SendError(
            error_text,
            retryable=retryable,
            provider_error=answer or response.text[:2000],
            retry_after=_retry_delay(error) if retryable else None,
        )


def _unsupported(key: str, what: str) -> InboundItem:
    return InboundItem(provider_event_id=key, kind="unsupported", data={"type": what})


def _user_file(user_file: Json) -> Json:
    """A file the user sent, as attachment metadata; RBM keeps it at ``fileUri``."""
    payload = user_file.get("payload") if isinstance(user_file.get("payload"), dict) else {}
    assert isinstance(payload, dict)
    mime_type = text(payload.get("mimeType"))
    major = mime_type.partition("/")[0]
    attachment: Json = {
        "type": major if major in ("image", "video", "audio") else "document",
        "url": text(payload.get("fileUri")),
        "mime_type": mime_type,
        "file_name": text(payload.get("fileName")),
        "size": payload.get("fileSizeBytes"),
    }
    thumbnail = user_file.get("thumbnail")
    if isinstance(thumbnail, dict) and thumbnail.get("fileUri"):
        attachment["thumbnail_url"] = text(thumbnail["fileUri"])
    return attachment
