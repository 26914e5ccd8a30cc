"""The few pages Hilo shows customers themselves (not agents): plain, bilingual, no scripts."""

from __future__ import annotations

import html


def simple_page(locale: str, title: str, text: str) -> str:
    """A one-message page in ``locale``; ``title`` and ``text`` are escaped here."""
    heading = html.escape(title)
    return (
        f'<!doctype html><html lang="{html.escape(locale)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{heading}</title><style>body{{font-family:system-ui,sans-serif;margin:0;"
        "display:flex;min-height:100vh;align-items:center;justify-content:center;"
        "background:#f6f8fa;color:#1f2328}main{max-width:32rem;padding:2rem;text-align:center}"
        "</style></head>"
        f"<body><main><h1>{heading}</h1><p>{html.escape(text)}</p></main></body></html>"
    )
