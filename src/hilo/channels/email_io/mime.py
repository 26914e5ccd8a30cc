"""Reading e-mail as it really arrives, and writing Hilo's replies.

Mail comes in every charset, with RFC 2047 encoded words (Q and B) in its headers, raw 8-bit
bytes where none are allowed, quoted-printable or base64 bodies, and MIME trees that are
sometimes broken. Everything here is lenient: a defect is noted, never raised, and text is
decoded with the declared charset, else UTF-8, else Windows-1252 (what "ISO-8859-1" mail
really is), so a Spanish accent survives whatever the sender's client did.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.errors import HeaderParseError
from email.header import decode_header
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from email.utils import (
    collapse_rfc2231_value,
    format_datetime,
    formataddr,
    getaddresses,
    parsedate_to_datetime,
)
from html.parser import HTMLParser
from typing import Any

from mailparser_reply import EmailReplyParser

from hilo.contacts.service import normalise_email

# Characters of text kept on a message; the raw mail, stored as it came, keeps everything.
MAX_TEXT = 200_000
# Past this, quote detection (regular expressions over the whole text) is not attempted.
MAX_QUOTE_SCAN = 100_000
# How many ids of a thread's history a reply's References carries (the nearest ones).
MAX_REFERENCES = 20
MAX_ID = 255

_MSG_ID = re.compile(r"<([^<>\s]+)>")
_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw|res)\s*(\[\d+\])?\s*:", re.IGNORECASE)
# Out-of-office subjects in the languages Hilo's customers write in.
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|answer)|autoreply|auto:|out of (the )?office"
    r"|respuesta autom[aá]tica|fuera de la oficina|ausencia|r[ée]ponse automatique"
    r"|absence|abwesenheit|automatische antwort|risposta automatica)",
    re.IGNORECASE,
)
_QUOTE_PARSER = EmailReplyParser(languages=["es", "en", "fr", "de", "it", "nl"])


def read(raw: bytes) -> EmailMessage:
    """The message in ``raw``; defects are recorded on it (``.defects``), never raised."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Bytes as text: the declared charset if it decodes, else UTF-8, else Windows-1252."""
    for candidate in (charset, "utf-8"):
        if candidate:
            try:
                return data.decode(candidate)
            except (LookupError, UnicodeDecodeError):
                continue
    return data.decode("cp1252", errors="replace")


def _raw_8bit(value: str) -> str:
    # The parser keeps raw 8-bit header bytes as surrogate escapes: decode them for real.
    if not any("\udc80" <= c <= "\udcff" for c in value):
        return value
    return decode_bytes(value.encode("utf-8", "surrogateescape"))


def decode_words(value: str) -> str:
    """A header value with its RFC 2047 encoded words (Q or B, any charset) decoded."""
    value = _raw_8bit(value)
    if "=?" not in value:
        return value
    try:
        chunks = decode_header(value)
    except (HeaderParseError, ValueError):
        return value
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        elif charset is None or charset == "unknown-8bit":
            out.append(chunk.decode("raw-unicode-escape", errors="replace"))
        else:
            out.append(decode_bytes(chunk, charset))
    return "".join(out)


def _values(message: Message, name: str) -> list[str]:
    lowered = name.lower()
    return [
        re.sub(r"\r?\n(?=[ \t])", "", str(value))
        for key, value in message.raw_items()
        if key.lower() == lowered
    ]


def header(message: Message, name: str) -> str:
    """The first ``name`` header, unfolded and decoded; empty when absent."""
    values = _values(message, name)
    return decode_words(values[0]).strip() if values else ""


def has_header(message: Message, name: str) -> bool:
    """Whether ``name`` is present at all."""
    return bool(_values(message, name))


def addresses(message: Message, *names: str) -> list[tuple[str, str]]:
    """(display name, lower-cased address) of every valid address in those headers."""
    # Split on the raw value: a decoded display name may hold a comma.
    raw = [_raw_8bit(value) for name in names for value in _values(message, name)]
    found: list[tuple[str, str]] = []
    for display, address in getaddresses(raw):
        normalised = normalise_email(address) if address else None
        if normalised and len(normalised) <= 320 and normalised.count("@") == 1:
            found.append((decode_words(display).strip(), normalised))
    return found


def short_id(value: str) -> str:
    """An id that fits a provider id column (a hash stands for an overlong one)."""
    if len(value) <= MAX_ID:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def message_ids(value: str) -> list[str]:
    """The ids of a Message-ID, In-Reply-To or References header, without angle brackets."""
    found = _MSG_ID.findall(value)
    bare = value.strip()
    if not found and bare and not any(c.isspace() for c in bare):
        found = [bare.strip("<>")]  # some clients leave the brackets out
    return [short_id(i) for i in found if i]


def sent_at(message: Message) -> datetime | None:
    """The Date header as an aware datetime (UTC when it names no zone)."""
    value = header(message, "Date")
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- bodies -------------------------------------------------------------------------------------


def part_text(part: Message) -> str:
    """A text part decoded (transfer encoding and charset), with ``\\n`` line ends."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return decode_bytes(payload, part.get_content_charset()).replace("\r\n", "\n")


def _body(message: EmailMessage, kind: str) -> Message | None:
    try:
        return message.get_body(preferencelist=(kind,))
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


@dataclass
class Bodies:
    """A message's readable text; ``parts`` are the MIME parts it came from."""

    text: str
    html: bool
    parts: list[Message] = field(default_factory=list)


def bodies(message: EmailMessage) -> Bodies:
    """The plain text, or the HTML as text when there is no plain part."""
    plain, rich = _body(message, "plain"), _body(message, "html")
    used = [p for p in (plain, rich) if p is not None]
    if plain is not None:
        return Bodies(part_text(plain), html=False, parts=used)
    if rich is not None:
        return Bodies(html_to_text(part_text(rich)), html=True, parts=used)
    if message.get_content_maintype() in ("text", "multipart") and not message.is_multipart():
        # No usable structure (a multipart without its boundary): read it as plain text.
        return Bodies(part_text(message), html=False, parts=[message])
    return Bodies("", html=False)


class _HtmlText(HTMLParser):
    """HTML to readable text; with ``drop_quotes``, without the quoted history."""

    BLOCKS = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"}
        | {"pre", "table", "ul", "ol", "hr", "section"}
    )
    HIDDEN = frozenset(("script", "style", "head", "title"))
    QUOTE_CLASSES = ("gmail_quote", "yahoo_quoted", "moz-cite-prefix")

    def __init__(self, *, drop_quotes: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.drop_quotes = drop_quotes
        self.out: list[str] = []
        self.hidden = 0
        self.dropping: tuple[str, int] | None = None

    def _is_quote(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        if tag == "blockquote":
            return True
        classes = " ".join(v or "" for k, v in attrs if k == "class")
        return any(name in classes for name in self.QUOTE_CLASSES)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.dropping is not None:
            if tag == self.dropping[0]:
                self.dropping = (tag, self.dropping[1] + 1)
            return
        if self.drop_quotes and self._is_quote(tag, attrs):
            self.dropping = (tag, 1)
            return
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.out.append("\n")
        if tag == "li":
            self.out.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if self.dropping is not None:
            if tag == self.dropping[0]:
                depth = self.dropping[1] - 1
                self.dropping = (tag, depth) if depth else None
            return
        if tag in self.HIDDEN:
            self.hidden = max(self.hidden - 1, 0)
        elif tag in self.BLOCKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self.dropping is None and not self.hidden:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(markup: str, *, drop_quotes: bool = False) -> str:
    """The readable text of an HTML body."""
    parser = _HtmlText(drop_quotes=drop_quotes)
    parser.feed(markup)
    parser.close()
    lines = [line.strip() for line in "".join(parser.out).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _cut_trailing_quote(text: str) -> str:
    # A top-posted reply ends with the quoted history ("> ...") under an attribution line
    # ("On … wrote:", "El … escribió:"): cut both, whatever the language.
    lines = text.split("\n")
    start = len(lines)
    while start > 0 and (lines[start - 1].lstrip().startswith(">") or not lines[start - 1].strip()):
        start -= 1
    if not any(line.lstrip().startswith(">") for line in lines[start:]):
        return text
    while start > 0 and not lines[start - 1].strip():
        start -= 1
    if start > 0 and lines[start - 1].rstrip().endswith(":"):
        start -= 1
    return "\n".join(lines[:start]).strip()


def strip_quoted(text: str) -> str:
    """The new part of a reply, without the quoted history; the whole text when unsure."""
    whole = text.strip()
    if not whole:
        return ""
    reply = whole
    if len(whole) <= MAX_QUOTE_SCAN:
        latest = _QUOTE_PARSER.parse_reply(whole) or ""
        normalised = "\n".join(line.strip() for line in whole.split("\n")).strip()
        # The parser trims every line: keep the original when it found nothing to cut.
        reply = whole if latest.strip() == normalised else latest.strip()
    reply = _cut_trailing_quote(reply)
    return reply or whole


def clip(text: str) -> tuple[str, bool]:
    """``text`` cut to :data:`MAX_TEXT` characters, and whether it was."""
    return (text[:MAX_TEXT], True) if len(text) > MAX_TEXT else (text, False)


# -- automatic mail, bounces --------------------------------------------------------------------


def auto_reason(message: Message, *, envelope_from: str | None) -> str | None:
    """Why this mail is automatic (an out-of-office, a list, a bounce), or None.

    Automatic mail is kept but must never be answered automatically (RFC 3834), or two
    robots answer each other forever.
    """
    submitted = header(message, "Auto-Submitted").lower()
    if submitted and submitted != "no":
        return "auto-submitted"
    for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"):
        if has_header(message, name):
            return name.lower()
    precedence = header(message, "Precedence").lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"precedence-{precedence}"
    if has_header(message, "List-Id") or has_header(message, "List-Unsubscribe"):
        return "mailing-list"
    if envelope_from is not None and envelope_from.strip("<> ") == "":
        return "null-sender"
    if header(message, "Return-Path").strip() == "<>":
        return "null-sender"
    senders = addresses(message, "From")
    if senders and senders[0][1].split("@")[0] in ("mailer-daemon", "postmaster"):
        return "mailer-daemon"
    if message.get_content_type() == "multipart/report":
        return "report"
    if _AUTO_SUBJECT.match(header(message, "Subject")):
        return "subject"
    return None


@dataclass(frozen=True)
class DeliveryReport:
    """What a delivery status notification (RFC 3464) says about one recipient."""

    action: str
    status: str
    diagnostic: str
    recipient: str
    original_message_id: str | None

    @property
    def error(self) -> str:
        """The diagnostic as an error to keep on the message."""
        return " ".join(p for p in (self.status, self.diagnostic) if p) or "bounced"


def _status_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = part_text(part) if isinstance(payload, str) else ""
    return [HeaderParser().parsestr(chunk) for chunk in re.split(r"\n\s*\n", text) if chunk]


def _original_id(message: Message) -> str | None:
    for part in message.walk():
        kind = part.get_content_type()
        original: Message | None = None
        if kind == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                original = inner[0]
        elif kind == "text/rfc822-headers":
            original = HeaderParser().parsestr(part_text(part))
        if original is not None:
            ids = message_ids(header(original, "Message-ID"))
            if ids:
                return ids[0]
    return None


def delivery_report(message: Message) -> DeliveryReport | None:
    """The report of a bounce (``multipart/report; report-type=delivery-status``), or None."""
    if message.get_content_type() != "multipart/report":
        return None
    if str(message.get_param("report-type") or "").lower() != "delivery-status":
        return None
    status_part = next(
        (p for p in message.walk() if p.get_content_type() == "message/delivery-status"), None
    )
    if status_part is None:
        return None
    recipients = [b for b in _status_blocks(status_part) if has_header(b, "Action")]
    if not recipients:
        return None
    chosen = next((b for b in recipients if header(b, "Action").lower() == "failed"), None)
    chosen = chosen or recipients[0]
    diagnostic = header(chosen, "Diagnostic-Code")
    kind, sep, rest = diagnostic.partition(";")
    if sep and " " not in kind.strip():
        diagnostic = rest  # "smtp; 550 …": the type is not news
    return DeliveryReport(
        action=header(chosen, "Action").lower(),
        status=header(chosen, "Status"),
        diagnostic=re.sub(r"\s+", " ", diagnostic).strip(),
        recipient=header(chosen, "Final-Recipient").partition(";")[2].strip(),
        original_message_id=_original_id(message),
    )


# -- attachments --------------------------------------------------------------------------------


def _leaves(part: Message, path: str) -> Iterator[tuple[str, Message]]:
    children = part.get_payload() if part.get_content_maintype() == "multipart" else None
    if isinstance(children, list):
        for index, child in enumerate(children, start=1):
            if isinstance(child, Message):
                yield from _leaves(child, f"{path}.{index}" if path else str(index))
    else:
        yield path or "1", part


def _param(part: Message, name: str, param: str) -> str | None:
    values = _values(part, name)
    if not values:
        return None
    # Parsed from the raw header, so raw 8-bit bytes decode as any other text does.
    holder = Message()
    holder[name] = _raw_8bit(values[0])
    try:
        value = holder.get_param(param, header=name)
    except (HeaderParseError, ValueError, TypeError, IndexError):
        return None
    if not value:
        return None
    return decode_words(collapse_rfc2231_value(value)).strip() or None


def _filename(part: Message) -> str | None:
    return _param(part, "Content-Disposition", "filename") or _param(part, "Content-Type", "name")


def _is_file(part: Message, body_parts: list[Message]) -> bool:
    if any(part is used for used in body_parts):
        return False
    disposition = (part.get_content_disposition() or "").lower()
    return (
        disposition == "attachment"
        or _filename(part) is not None
        or part.get_content_maintype() not in ("text", "multipart")
    )


def part_content(part: Message) -> bytes:
    """A file part's bytes (an attached message as its own raw mail)."""
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return inner[0].as_bytes(policy=policy.compat32)
        return b""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def files(message: Message, body_parts: list[Message]) -> list[tuple[dict[str, Any], bytes]]:
    """The message's files: metadata (``part`` names the MIME part) and bytes."""
    found: list[tuple[dict[str, Any], bytes]] = []
    for path, part in _leaves(message, ""):
        if not _is_file(part, body_parts):
            continue
        content = part_content(part)
        mime_type = part.get_content_type()
        entry: dict[str, Any] = {
            "type": mime_type.partition("/")[0]
            if mime_type.partition("/")[0] in ("image", "audio", "video")
            else "document",
            "part": path,
            "mime_type": mime_type,
            "filename": _filename(part),
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
            "inline": (part.get_content_disposition() or "").lower() == "inline",
        }
        content_id = header(part, "Content-ID").strip("<> ")
        if content_id:
            entry["content_id"] = content_id[:255]
        found.append((entry, content))
    return found


def file_at(message: Message, path: str) -> bytes | None:
    """The bytes of the MIME part ``path`` (as :func:`files` names it), or None."""
    for leaf_path, part in _leaves(message, ""):
        if leaf_path == path:
            return part_content(part)
    return None


# -- writing ------------------------------------------------------------------------------------


def reply_subject(subject: str) -> str:
    """``Re: subject``, without piling up prefixes."""
    subject = subject.strip()
    return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}".strip()


def text_to_html(text: str) -> str:
    """A plain reply as escaped HTML paragraphs."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    body = "".join(
        "<p>" + html.escape(p.strip()).replace("\n", "<br>\n") + "</p>\n" for p in paragraphs
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
        f"<body>\n{body}</body></html>\n"
    )


@dataclass(frozen=True)
class Outgoing:
    """A reply to write."""

    from_name: str
    from_address: str
    to: str
    subject: str
    text: str
    message_id: str
    date: datetime
    reply_to: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    # (file name, MIME type, bytes) of each attached file.
    files: tuple[tuple[str, str, bytes], ...] = ()


def compose(mail: Outgoing) -> EmailMessage:
    """A multipart (text + HTML, then files) reply with its threading headers."""
    message = EmailMessage()
    message["From"] = formataddr((mail.from_name, mail.from_address))
    message["To"] = mail.to
    # A customer's subject may decode to line breaks (CR LF, U+2028…): a header is one line.
    message["Subject"] = " ".join(mail.subject.splitlines())
    message["Date"] = format_datetime(mail.date.astimezone(UTC))
    message["Message-ID"] = f"<{mail.message_id}>"
    if mail.in_reply_to:
        message["In-Reply-To"] = f"<{mail.in_reply_to}>"
    if mail.references:
        message["References"] = " ".join(f"<{r}>" for r in mail.references[-MAX_REFERENCES:])
    if mail.reply_to:
        message["Reply-To"] = formataddr((mail.from_name, mail.reply_to))
    message.set_content(mail.text, cte="quoted-printable")
    message.add_alternative(text_to_html(mail.text), subtype="html", cte="quoted-printable")
    for filename, mime_type, content in mail.files:
        maintype, _slash, subtype = mime_type.partition("/")
        message.add_attachment(
            content, maintype=maintype, subtype=subtype or "octet-stream", filename=filename
        )
    return message
