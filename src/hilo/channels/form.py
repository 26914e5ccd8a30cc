"""Web forms: an HTML form on a company's site posted straight to Hilo.

``<form method="post" action="{public url}/webhooks/form/{channel_id}">`` with the fields
``name``, ``email``, ``phone`` and ``message``; any other field is kept with the message
(``data["fields"]``), uploaded files by name and size only. Fields starting with ``_`` are
Hilo's own: ``_idempotency_key`` (a retried post is the same message), ``_ts`` / ``_sig``
(a form token, see below) and the honeypot (``_gotcha`` by default: people leave it empty,
bots fill it in; a filled one is answered as usual and dropped).

Who may post: ``allowed_origins`` (the browser's ``Origin``/``Referer``), and with
``require_signature`` either ``X-Hilo-Timestamp`` / ``X-Hilo-Signature`` over the body as
on the API channel (a server posting the form), or a form token rendered into the page by
the company's server: ``_ts`` (Unix seconds) and ``_sig = hex(HMAC-SHA256(secret, _ts))``,
good for ``form_token_max_age_seconds``.

The typed e-mail and phone are unverified: they never join another contact by themselves
(a merge is suggested). Replies cannot go back through a form: they are copied to the
workspace's e-mail channel (see :mod:`hilo.channels.email_fallback`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx

from hilo.channels.api import ApiChannel
from hilo.channels.base import (
    ChannelContext,
    ChannelSetup,
    FollowUp,
    InboundItem,
    IngestResult,
    NoSetupCheck,
    OutboundMessage,
    RawRequest,
    Sender,
    SendResult,
)
from hilo.channels.public import (
    check_origin,
    validate_allowed_origins,
    validate_bool,
    validate_int,
    validate_secret,
)
from hilo.channels.webchat import EMAIL_FALLBACK_JOB
from hilo.contacts.service import normalise_email
from hilo.crypto import constant_time_equal, hmac_sha256_hex
from hilo.errors import InvalidPayload, InvalidSignature, StaleSignature
from hilo.i18n import _
from hilo.settings import get_settings

log = logging.getLogger(__name__)

MAX_FIELDS = 50
MAX_VALUE = 2000
MAX_MESSAGE = 10_000
DEFAULT_HONEYPOT = "_gotcha"
DEFAULT_TOKEN_AGE = 24 * 3600
KNOWN = ("name", "email", "phone", "message")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-\[\]]{0,63}$")
_IDEMPOTENCY = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")


def form_token(secret: str, timestamp: int) -> str:
    """The ``_sig`` a company's server renders next to ``_ts`` in its form."""
    return hmac_sha256_hex(secret, str(timestamp).encode())


def _decode_urlencoded(body: bytes) -> dict[str, list[str]]:
    try:
        return parse_qs(
            body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS * 2,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidPayload(
            _("The form could not be read: send it as UTF-8."), code="invalid_form"
        ) from exc


def _decode_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    document = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not isinstance(document, EmailMessage) or not document.is_multipart():
        raise InvalidPayload(
            _("The form could not be read: send it as UTF-8."), code="invalid_form"
        )
    fields: dict[str, list[str]] = {}
    files: list[dict[str, Any]] = []
    for part in document.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            # Files are not kept: only what they were, for the agent to ask for them.
            files.append(
                {
                    "field": name,
                    "file_name": filename[:255],
                    "mime_type": part.get_content_type(),
                    "size": len(raw),
                }
            )
            continue
        try:
            value = raw.decode(part.get_content_charset() or "utf-8")
        except (UnicodeDecodeError, LookupError) as exc:
            raise InvalidPayload(
                _("The form could not be read: send it as UTF-8."), code="invalid_form"
            ) from exc
        fields.setdefault(name, []).append(value)
    return fields, files


def read_form(request: RawRequest) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The posted fields (the last value of each) and the files, from the raw body."""
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";")[0].strip().lower()
    files: list[dict[str, Any]] = []
    if kind == "application/x-www-form-urlencoded":
        multi = _decode_urlencoded(request.body)
    elif kind == "multipart/form-data":
        multi, files = _decode_multipart(content_type, request.body)
    else:
        raise InvalidPayload(
            _("A form is posted as application/x-www-form-urlencoded or multipart/form-data."),
            code="invalid_form",
        )
    if len(multi) > MAX_FIELDS or len(files) > MAX_FIELDS:
        raise InvalidPayload(
            _("The form has more than {count} fields."), code="invalid_form", count=MAX_FIELDS
        )
    fields: dict[str, str] = {}
    for name, values in multi.items():
        if not _FIELD_NAME.match(name):
            raise InvalidPayload(_("Invalid payload: check the fields {fields}."), fields=name[:64])
        fields[name] = values[-1].strip()
    return fields, files


class FormChannel(NoSetupCheck):
    type: ClassVar[str] = "form"
    label: ClassVar[str] = _("Web form")
    setup_help: ClassVar[str] = _(
        "Set your HTML form's action to the webhook address (method POST): its name, email, "
        "phone and message fields open or continue a conversation."
    )
    providers: ClassVar[tuple[str, ...]] = ("hilo",)
    identity_kind: ClassVar[str] = "form"
    identity_scope: ClassVar[str] = "channel"
    supports_opt_out: ClassVar[bool] = False

    def validate_config(self, provider: str, config: dict[str, Any]) -> ChannelSetup:
        public: dict[str, Any] = {
            "allowed_origins": validate_allowed_origins(config.get("allowed_origins"))
        }
        thank_you = config.get("thank_you_url")
        if thank_you:
            parts = urlsplit(str(thank_you))
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InvalidPayload(
                    _("thank_you_url must be an http or https URL."), code="invalid_config"
                )
            public["thank_you_url"] = str(thank_you)
        honeypot = config.get("honeypot_field", DEFAULT_HONEYPOT)
        if not isinstance(honeypot, str) or not _FIELD_NAME.match(honeypot) or honeypot in KNOWN:
            raise InvalidPayload(
                _("honeypot_field must be a field name the form does not otherwise use."),
                code="invalid_config",
            )
        public["honeypot_field"] = honeypot
        public["require_signature"] = validate_bool(config, "require_signature", False)
        public["form_token_max_age_seconds"] = validate_int(
            config, "form_token_max_age_seconds", DEFAULT_TOKEN_AGE, 60, 30 * 86400
        )
        secret = validate_secret(config)
        return ChannelSetup(config=public, secrets={"secret": secret})

    def verify(self, request: RawRequest, channel: ChannelContext) -> None:
        check_origin(channel.config, request.headers)
        if not channel.config.get("require_signature"):
            return
        if request.headers.get("x-hilo-signature"):
            ApiChannel().verify(request, channel)  # a server posting: the API channel's rule
            return
        fields, _files = read_form(request)
        stamp, signature = fields.get("_ts", ""), fields.get("_sig", "")
        if not stamp.isdigit() or not signature:
            raise InvalidSignature()
        expected = form_token(str(channel.secrets.get("secret") or ""), int(stamp))
        if not constant_time_equal(expected, signature.lower()):
            raise InvalidSignature()
        age = time.time() - int(stamp)
        max_age = int(channel.config.get("form_token_max_age_seconds", DEFAULT_TOKEN_AGE))
        if age > max_age or age < -get_settings().webhook_clock_skew_seconds:
            raise StaleSignature()

    def parse_inbound(self, request: RawRequest, channel: ChannelContext) -> list[InboundItem]:
        fields, files = read_form(request)
        honeypot = str(channel.config.get("honeypot_field") or DEFAULT_HONEYPOT)
        if fields.get(honeypot):
            log.info("form post on channel %s filled the honeypot: dropped", channel.id)
            return []
        text = fields.get("message", "")
        if not text:
            raise InvalidPayload(
                _('The form has no message: name the message field "message".'),
                code="empty_message",
            )
        if len(text) > MAX_MESSAGE:
            raise InvalidPayload(
                _("The message is longer than {count} characters."),
                code="message_too_long",
                count=MAX_MESSAGE,
            )
        extra = {
            name: value[:MAX_VALUE]
            for name, value in fields.items()
            if name not in KNOWN and not name.startswith("_") and name != honeypot
        }
        name = fields.get("name", "")[:200] or None
        email = normalise_email(fields.get("email", ""))
        if fields.get("email") and email is None:
            extra["email"] = fields["email"][:MAX_VALUE]  # kept for the agent, not an identity
        phone = re.sub(r"[^\d+]", "", fields.get("phone", ""))[:32] or None
        data: dict[str, Any] = {"fields": extra}
        if files:
            data["files"] = files
        page = request.headers.get("referer")
        if page:
            data["page_url"] = page[:2000]
        return [
            InboundItem(
                provider_event_id=self._event_id(fields, extra, request),
                kind="message",
                sender=Sender(
                    # The same typed address continues the same form conversation; it joins
                    # no other contact (unverified), and no history is ever shown back.
                    external_id=_sender_id(email, phone, request),
                    name=name,
                    email=email,
                    phone=phone,
                    id_verified=False,
                ),
                text=text,
                data=data,
            )
        ]

    def _event_id(self, fields: dict[str, str], extra: dict[str, str], request: RawRequest) -> str:
        key = fields.get("_idempotency_key", "")
        if _IDEMPOTENCY.match(key):
            return f"key:{key}"
        # Without a key, the same fields posted within the same hour are one submission
        # (a double click, a browser resending): the hash of the fields and the hour.
        content = {k: fields.get(k, "") for k in KNOWN} | {"fields": extra}
        hour = request.received_at.strftime("%Y-%m-%dT%H")
        digest = hashlib.sha256(
            json.dumps([content, hour], sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()
        return f"hash:{digest}"

    def acknowledge(self, results: list[IngestResult]) -> tuple[int, Any]:
        if not results:
            return 200, {"stored": False}
        result = results[0]
        return 200, {
            "stored": True,
            "message_id": str(result.message_id),
            "duplicate": result.duplicate,
        }

    async def send(
        self, client: httpx.AsyncClient, channel: ChannelContext, message: OutboundMessage
    ) -> SendResult:
        # A form has no way back to the customer: the reply goes on by e-mail.
        return SendResult(
            provider_message_id=None,
            follow_ups=(FollowUp(EMAIL_FALLBACK_JOB, {"message_id": str(message.message_id)}),),
        )


def _sender_id(email: str | None, phone: str | None, request: RawRequest) -> str:
    if email:
        return f"e:{email}"
    if phone:
        return f"p:{phone}"
    # Nothing to recognise the sender by: every such post is a new person.
    return (
        "anon:"
        + hashlib.sha256(request.body + request.received_at.isoformat().encode()).hexdigest()[:32]
    )
