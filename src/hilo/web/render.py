"""Server-rendered HTML: one Jinja2 environment, autoescaped, translated per request.

Customer text reaches templates as plain ``str`` and is always escaped: nothing here marks
text as safe, and templates never use ``|safe``.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from hilo.clock import aware, now
from hilo.i18n import translate

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# The browser may load scripts, styles and images from Hilo only; nothing inline runs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The template environment (autoescaping every template)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates are part of the installed package: read once, never re-checked per page.
        auto_reload=False,
    )
    env.filters["query"] = _query
    env.globals["safe_url"] = safe_url
    env.globals["initials"] = initials
    from hilo.web import service  # the label tables live with the rules that use them

    env.globals.update(
        status_labels=service.STATUS_LABELS,
        priority_labels=service.PRIORITY_LABELS,
        delivery_labels=service.DELIVERY_LABELS,
        identity_labels=service.IDENTITY_LABELS,
        language_names=service.LANGUAGE_NAMES,
        role_labels=service.ROLE_LABELS,
    )
    return env


def _query(params: dict[str, Any], **changes: Any) -> str:
    """``params`` with ``changes`` applied, as a query string (empty values dropped)."""
    merged = {**params, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "", False)})


def safe_url(value: Any) -> str | None:
    """A link target taken from customer or provider data: only http(s), else None."""
    text = str(value or "").strip()
    if urlsplit(text).scheme.lower() in ("http", "https") and not re.search(r"[\s<>\"']", text):
        return text
    return None


def initials(name: str) -> str:
    """Up to two initials for an avatar."""
    parts = [p for p in re.split(r"[\s._@-]+", name) if p]
    return "".join(p[0] for p in parts[:2]).upper() or "?"


class Clock:
    """Times shown in the workspace's time zone, in the reader's language."""

    def __init__(self, timezone: str, locale: str) -> None:
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self.zone = ZoneInfo("UTC")
        self.locale = locale
        self.today = now().astimezone(self.zone).date()
        self._dates: dict[tuple[date, str], str] = {}

    def local(self, value: datetime) -> datetime:
        return aware(value).astimezone(self.zone)

    def _date(self, value: date, pattern: str) -> str:
        # Babel is slow and a long thread repeats its days: each (day, pattern) once.
        key = (value, pattern)
        text = self._dates.get(key)
        if text is None:
            text = self._dates[key] = str(format_date(value, pattern, locale=self.locale))
        return text

    def short(self, value: datetime | None) -> str:
        """14:42 today, "mar 14:42" this week, "12 nov" this year, else "12 nov 2025"."""
        if value is None:
            return ""
        local = self.local(value)
        day = local.date()
        if day == self.today:
            return local.strftime("%H:%M")
        if self.today - day < timedelta(days=6) and day <= self.today:
            return f"{self._date(day, 'EEE')} {local.strftime('%H:%M')}"
        return self._date(day, "d MMM" if local.year == self.today.year else "d MMM y")

    def full(self, value: datetime | None) -> str:
        """The whole date and time, for titles and the trail."""
        if value is None:
            return ""
        local = self.local(value)
        return f"{self._date(local.date(), 'd MMM y')}, {local.strftime('%H:%M:%S')}"

    def day(self, value: datetime) -> str:
        """The day of a timeline separator: "martes, 12 de noviembre de 2026"."""
        return self._date(self.local(value).date(), "full")

    def iso(self, value: datetime | None) -> str:
        return aware(value).isoformat() if value else ""

    def input_value(self, value: datetime | None) -> str:
        """The value of a ``datetime-local`` input."""
        return self.local(value).strftime("%Y-%m-%dT%H:%M") if value else ""


def page(
    template: str,
    context: dict[str, Any],
    *,
    locale: str,
    timezone: str = "UTC",
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render ``template`` in ``locale`` with the security headers every page carries."""

    def gettext(message: str, **params: Any) -> str:
        return translate(message, locale, **params)

    values = {"nav": "", "path": "/app/inbox", "csrf": "", "web": None, **context}
    html = (
        environment()
        .get_template(template)
        .render(_=gettext, locale=locale, clock=Clock(timezone, locale), **values)
    )
    return HTMLResponse(
        html, status_code=status_code, headers={**SECURITY_HEADERS, **(headers or {})}
    )
