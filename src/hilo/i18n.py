"""Spanish and English for every user-facing string.

Strings are written in English and marked with :func:`_`; the Spanish catalogue is a
standard gettext ``.po`` file read with Babel, so translators use their usual tools.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.pofile import read_po

LOCALES = ("es", "en")
DEFAULT_LOCALE = "es"
_DIR = Path(__file__).parent / "locales"


def _(message: str) -> str:
    """Mark ``message`` for translation; it is translated where it is shown."""
    return message


@lru_cache(maxsize=8)
def catalogue(locale: str) -> dict[str, str]:
    """The translations of ``locale`` (empty for English, the source language)."""
    path = _DIR / locale / "LC_MESSAGES" / "hilo.po"
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        po = read_po(fh, locale=locale)
    return {str(m.id): str(m.string) for m in po if m.id and m.string and not m.fuzzy}


def translate(message: str, locale: str, **params: object) -> str:
    """``message`` in ``locale``, with ``{name}`` placeholders filled from ``params``."""
    text = catalogue(locale).get(message, message)
    return text.format(**params) if params else text


def negotiate(accept_language: str | None, default: str = DEFAULT_LOCALE) -> str:
    """The best of our locales for an ``Accept-Language`` header."""
    if not accept_language:
        return default
    ranked: list[tuple[float, str]] = []
    for part in accept_language.split(","):
        tag, _sep, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
            language = Locale.parse(tag.strip().replace("-", "_")).language
        except (ValueError, UnknownLocaleError):
            continue
        ranked.append((weight, language))
    for _weight, language in sorted(ranked, key=lambda r: -r[0]):
        if language in LOCALES:
            return language
    return default
