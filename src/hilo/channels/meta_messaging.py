"""Meta's Messenger Platform, shared by Facebook Messenger and Instagram messaging.

Both send the same webhook shape — ``{"object": "page"|"instagram", "entry": [{"id":
<page or IG account id>, "time": ms, "messaging": [event, …]}]}`` (``standby`` instead of
``messaging`` while another app owns the thread) — signed with
``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw body)>``, set up with the
``hub.challenge`` handshake, and answered through the same Send API:
``POST {api_base_url}/{account id}/messages``.

:func:`verify_hub_signature` and :func:`answer_hub_challenge` are Meta's webhook rules for
every Meta channel (WhatsApp included). :class:`MetaMessagingChannel` is the adapter both
channels specialise: they differ in the ``object`` name, the config keys, the text limit and
the Send API's host.

Only entries for the channel's own account id are taken: one Meta app subscribed for several
Pages (or Instagram accounts) sends every one's traffic to every callback it knows.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from hilo.channels.base import (
    ChannelContext,
    ChannelSetup,
    InboundItem,
    IngestResult,
    OutboundMessage,
    RawRequest,
    Sender,
    SendError,
    SendResult,
)
from hilo.crypto import constant_time_equal, hmac_sha256_hex, new_secret
from hilo.errors import Forbidden, InvalidPayload, InvalidSignature
from hilo.i18n import _

log = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://graph.facebook.com/v21.0"
# Graph error codes that mean "slow down", whatever HTTP status they come with: application
# (4), user (17), Page (32) and Messenger (613) rate limits; 2 is "temporarily unavailable".
RETRYABLE_CODES = frozenset({2, 4, 17, 32, 613})
# (#10) with these subcodes: the message was sent outside the 24-hour messaging window
# (Messenger, Instagram).
OUTSIDE_WINDOW_SUBCODES = frozenset({2018278, 2534022})
# Event keys of the Messenger Platform other than message, postback, delivery and read:
# kept for the trail as ``unsupported`` under their name.
OTHER_EVENTS = (
    "reaction",
    "referral",
    "optin",
    "message_edit",
    "pass_thread_control",
    "take_thread_control",
    "request_thread_control",
    "app_roles",
    "policy_enforcement",
    "account_linking",
    "game_play",
)

Json = dict[str, Any]


# -- Meta's webhook rules (every Meta channel) ----------------------------------------------


def sign(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``body``."""
    return "sha256=" + hmac_sha256_hex(app_secret, body)


def verify_hub_signature(request: RawRequest, app_secret: str) -> None:
    """Check ``X-Hub-Signature-256`` over the raw body; raise ``InvalidSignature``."""
    signature = request.headers.get("x-hub-signature-256", "").strip()
    if not signature or not app_secret:
        raise InvalidSignature()
    if not constant_time_equal(sign(app_secret, request.body), signature.lower()):
        raise InvalidSignature()


def answer_hub_challenge(request: RawRequest, verify_token: str) -> tuple[int, str]:
    """Meta's ``GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`` set-up check.

    Answered with the challenge when the token is ours; ``Forbidden`` otherwise.
    """
    token = request.query.get("hub.verify_token", "")
    if (
        request.query.get("hub.mode") != "subscribe"
        or not verify_token
        or not constant_time_equal(token, verify_token)
    ):
        raise Forbidden(code="invalid_verify_token")
    return 200, request.query.get("hub.challenge", "")[:256]


# -- small readers ----------------------------------------------------------------------------


def _dict(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _sent_at(timestamp_ms: Any) -> str | None:
    """The Messenger Platform's Unix-milliseconds timestamp as ISO 8601 in UTC."""
    if isinstance(timestamp_ms, bool):
        return None
    try:
        return datetime.fromtimestamp(int(timestamp_ms) / 1000, tz=UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _fingerprint(value: Any) -> str:
    """A stable id for something that has none, so redeliveries still collapse."""
    encoded = json.dumps(value, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]


def _attachment(attachment: Json) -> Json:
    """An attachment's metadata: its type and what its payload says (URL, sticker id…)."""
    payload = _dict(attachment.get("payload"))
    kept: Json = {key: value for key, value in payload.items() if value is not None}
    for key in ("title", "url"):
        if attachment.get(key) and key not in kept:
            kept[key] = _str(attachment[key])
    kept["type"] = _str(attachment.get("type")) or "file"
    return kept


# -- the adapter ------------------------------------------------------------------------------


class MetaMessagingChannel:
    """Messenger and Instagram messaging: subclasses set the names and the text limit."""

    type: ClassVar[str]
    setup_help: ClassVar[str]
    providers: ClassVar[tuple[str, ...]] = ("meta",)
    identity_kind: ClassVar[str]
    # A PSID / IGSID is scoped to one Page / Instagram account: only meaningful there.
    identity_scope: ClassVar[str] = "channel"
    # A customer writing STOP / BAJA here is one person asking us to stop: honoured.
    supports_opt_out: ClassVar[bool] = True
    # The webhook's ``object``, the config key of our account id, the secret holding the
    # Send API access token.
    webhook_object: ClassVar[str]
    account_key: ClassVar[str]
    credential_key: ClassVar[str]
    label: ClassVar[str]
    # Where the Send API is unless the channel's ``api_base_url`` says otherwise.
    default_api_base_url: ClassVar[str] = DEFAULT_API_BASE_URL

    def text_problem(self, text: str) -> str | None:
        """Why ``text`` cannot be sent as one message, or None."""
        raise NotImplementedError

    # -- set-up -------------------------------------------------------------------------

    def validate_config(self, provider: str, config: dict[str, Any]) -> ChannelSetup:
        missing = [
            name
            for name in (self.account_key, "app_secret", self.credential_key)
            if not _str(config.get(name)).strip()
        ]
        account = _str(config.get(self.account_key)).strip()
        if account and not account.isdigit():
            missing.append(self.account_key)
        base = _str(config.get("api_base_url")).strip() or self.default_api_base_url
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            missing.append("api_base_url")
        if missing:
            raise InvalidPayload(
                _("Invalid payload: check the fields {fields}."),
                code="invalid_config",
                fields=", ".join(f"config.{name}" for name in missing),
            )
        return ChannelSetup(
            config={self.account_key: account, "api_base_url": base.rstrip("/")},
            secrets={
                "app_secret": _str(config["app_secret"]).strip(),
                self.credential_key: _str(config[self.credential_key]).strip(),
                # Pasted into Meta's console next to the webhook URL; ours unless given.
                "verify_token": _str(config.get("verify_token")).strip() or new_secret(24),
            },
        )

    def handshake(self, request: RawRequest, channel: ChannelContext) -> tuple[int, str]:
        return answer_hub_challenge(request, _str(channel.secrets.get("verify_token")))

    # -- inbound ------------------------------------------------------------------------

    def verify(self, request: RawRequest, channel: ChannelContext) -> None:
        verify_hub_signature(request, _str(channel.secrets.get("app_secret")))

    def parse_inbound(self, request: RawRequest, channel: ChannelContext) -> list[InboundItem]:
        try:
            payload = json.loads(request.body)
        except ValueError as exc:
            raise InvalidPayload() from exc
        if not isinstance(payload, dict) or payload.get("object") != self.webhook_object:
            raise InvalidPayload(_("Invalid payload: check the fields {fields}."), fields="object")
        entries = payload.get("entry")
        if not isinstance(entries, list):
            raise InvalidPayload(_("Invalid payload: check the fields {fields}."), fields="entry")
        ours = _str(channel.config.get(self.account_key))
        items: list[InboundItem] = []
        for entry in entries:
            entry = _dict(entry)
            account = _str(entry.get("id"))
            if account != ours:
                log.info(
                    "%s entry for account id %s ignored on channel %s",
                    self.type,
                    account or "?",
                    channel.id,
                )
                continue
            for list_name in ("messaging", "standby"):
                for event in _list(entry.get(list_name)):
                    for item in self._event(_dict(event), ours):
                        if list_name == "standby":
                            # Another app (a bot, Page inbox) owns the thread for now.
                            item.data["standby"] = True
                        items.append(item)
            if entry.get("changes"):
                log.info("%s entry changes (comments, mentions) ignored", self.type)
        for item in items:
            log.debug("%s event %s on channel %s", self.type, item.kind, channel.id)
        return items

    def _event(self, event: Json, ours: str) -> list[InboundItem]:
        if "message" in event:
            return [self._message(event, ours)]
        if "postback" in event:
            return [self._postback(event)]
        if "delivery" in event:
            return self._receipt(event, "delivery", "delivered")
        if "read" in event:
            return self._receipt(event, "read", "read")
        name = next((key for key in OTHER_EVENTS if key in event), "unknown")
        return [
            InboundItem(
                provider_event_id=f"{name}:{_fingerprint(event)}",
                kind="unsupported",
                sent_at=_sent_at(event.get("timestamp")),
                data={"event": name},
            )
        ]

    def _message(self, event: Json, ours: str) -> InboundItem:
        message = _dict(event.get("message"))
        mid = _str(message.get("mid"))
        psid = _str(_dict(event.get("sender")).get("id"))
        sent_at = _sent_at(event.get("timestamp"))
        if message.get("is_echo") or (psid and psid == ours):
            # Our own send (from Hilo, the Page inbox or another app) echoed back: never a
            # customer's message. Kept for the trail, without its text.
            return InboundItem(
                provider_event_id=f"{mid}:echo" if mid else f"echo:{_fingerprint(event)}",
                kind="unsupported",
                sent_at=sent_at,
                data={
                    "event": "echo",
                    "provider_message_id": mid,
                    "metadata": _str(message.get("metadata")) or None,
                    "app_id": _str(message.get("app_id")) or None,
                },
            )
        if not mid or not psid:
            return InboundItem(
                provider_event_id=f"malformed:{_fingerprint(event)}",
                kind="unsupported",
                data={"reason": "message without mid or sender"},
            )
        if message.get("is_deleted"):
            # Instagram: the customer unsent a message. Not applied yet.
            return InboundItem(
                provider_event_id=f"{mid}:deleted",
                kind="unsupported",
                sent_at=sent_at,
                data={"event": "deleted", "provider_message_id": mid},
            )
        item = InboundItem(
            provider_event_id=mid,
            kind="message",
            sender=Sender(external_id=psid),
            text=_str(message.get("text")),
            attachments=[_attachment(_dict(a)) for a in _list(message.get("attachments"))],
            sent_at=sent_at,
        )
        quick_reply = _dict(message.get("quick_reply"))
        if quick_reply.get("payload") is not None:
            item.data.update(payload=_str(quick_reply["payload"]), reply_type="quick_reply")
        reply_to = _dict(message.get("reply_to"))
        if reply_to.get("mid"):
            item.data["reply_to"] = _str(reply_to["mid"])
        if reply_to.get("story"):
            item.data["reply_to_story"] = _dict(reply_to["story"])
        if message.get("referral"):
            item.data["referral"] = _dict(message["referral"])
        if message.get("is_unsupported") or (not item.text and not item.attachments):
            item.kind = "unsupported"
        return item

    def _postback(self, event: Json) -> InboundItem:
        postback = _dict(event.get("postback"))
        psid = _str(_dict(event.get("sender")).get("id"))
        if not psid:
            return InboundItem(
                provider_event_id=f"malformed:{_fingerprint(event)}",
                kind="unsupported",
                data={"reason": "postback without sender"},
            )
        mid = _str(postback.get("mid"))
        payload = _str(postback.get("payload"))
        item = InboundItem(
            provider_event_id=mid or f"postback:{psid}:{_str(event.get('timestamp'))}",
            kind="message",
            sender=Sender(external_id=psid),
            # The button's title is what the customer tapped, so what they "said".
            text=_str(postback.get("title")) or payload,
            sent_at=_sent_at(event.get("timestamp")),
            data={"payload": payload, "reply_type": "postback"},
        )
        if postback.get("referral"):
            item.data["referral"] = _dict(postback["referral"])
        return item

    def _receipt(self, event: Json, key: str, status: str) -> list[InboundItem]:
        """Delivery / read receipts: one per message id given, and one for the watermark."""
        receipt = _dict(event.get(key))
        psid = _str(_dict(event.get("sender")).get("id"))
        sent_at = _sent_at(event.get("timestamp"))
        watermark = receipt.get("watermark")
        mids = [_str(m) for m in _list(receipt.get("mids")) if m]
        if receipt.get("mid"):
            mids.append(_str(receipt["mid"]))
        items = [
            InboundItem(
                provider_event_id=f"{mid}:{status}",
                kind="status",
                sent_at=sent_at,
                data={"provider_message_id": mid, "status": status},
            )
            for mid in mids
        ]
        up_to = _sent_at(watermark) if watermark is not None else None
        if up_to and psid:
            # "Everything we sent this customer up to this time": it also covers replies
            # whose own receipt never came (Meta sends mids only sometimes).
            items.append(
                InboundItem(
                    provider_event_id=f"watermark:{psid}:{status}:{_str(watermark)}",
                    kind="status",
                    sender=Sender(external_id=psid),
                    sent_at=sent_at,
                    data={"status": status, "watermark": up_to},
                )
            )
        if items:
            return items
        return [
            InboundItem(
                provider_event_id=f"{key}:{_fingerprint(event)}",
                kind="unsupported",
                sent_at=sent_at,
                data={"event": key},
            )
        ]

    def acknowledge(self, results: list[IngestResult]) -> tuple[int, Any]:
        # Meta needs only a 2xx, also for a delivery that held nothing for this channel.
        return 200, {"ok": True}

    # -- outbound -----------------------------------------------------------------------

    async def send(
        self, client: httpx.AsyncClient, channel: ChannelContext, message: OutboundMessage
    ) -> SendResult:
        problem = self.text_problem(message.text)
        if problem:
            raise SendError(problem, retryable=False)
        base = _str(channel.config.get("api_base_url")) or self.default_api_base_url
        url = f"{base.rstrip('/')}/{channel.config[self.account_key]}/messages"
        body = {
            "recipient": {"id": message.recipient},
            # A reply to the customer, inside the 24-hour window.
            "messaging_type": "RESPONSE",
            # Echoed back in message_echoes: our id, whatever happens to the mid.
            "message": {"text": message.text, "metadata": str(message.message_id)},
        }
        # The token goes in a header, never the URL (which httpx logs at info).
        headers = {"Authorization": f"Bearer {channel.secrets[self.credential_key]}"}
        try:
            response = await client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SendError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.is_success:
            mid = _str(_dict(answer).get("message_id"))
            if not mid:
                raise SendError(
                    f"HTTP {response.status_code} without a message id: {response.text[:300]}",
                    retryable=False,
                    provider_error=response.text[:2000],
                )
            return SendResult(provider_message_id=mid)
        raise graph_send_error(response, answer)


def graph_send_error(response: httpx.Response, answer: Any) -> SendError:
    """A Send API refusal, with Meta's own words, and whether trying again can help."""
    error = _dict(_dict(answer).get("error"))
    code, subcode = error.get("code"), error.get("error_subcode")
    text = f"HTTP {response.status_code}"
    if error:
        text += f": (#{code}) {_str(error.get('message'))}"
        if subcode is not None:
            text += f" (subcode {subcode})"
    else:
        text += f": {response.text[:500]}"
    outside_window = code == 10 and subcode in OUTSIDE_WINDOW_SUBCODES
    if outside_window:
        text += " (outside the 24-hour messaging window: the HUMAN_AGENT tag is not used yet)"
    retryable = (
        response.status_code >= 500
        or response.status_code in (408, 429)
        or code in RETRYABLE_CODES
        or error.get("is_transient") is True
    ) and not outside_window
    retry_after: float | None = None
    header = response.headers.get("retry-after", "")
    if retryable and header.isdigit():
        retry_after = float(header)
    return SendError(
        text,
        retryable=retryable,
        provider_error=error or response.text[:2000],
        retry_after=retry_after,
    )
