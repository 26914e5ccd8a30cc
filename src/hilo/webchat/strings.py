"""What the widget says, in Spanish and English (from the same catalogue as the rest)."""

from __future__ import annotations

from hilo.i18n import LOCALES, _, translate

# ``{email}`` and ``{count}`` are filled in by the widget itself.
WIDGET_STRINGS: dict[str, str] = {
    "open": _("Open chat"),
    "close": _("Close chat"),
    "title": _("Chat with us"),
    "intro": _("Write to us and we will answer here."),
    "input_label": _("Your message"),
    "placeholder": _("Write a message…"),
    "send": _("Send"),
    "you": _("You"),
    "team": _("Team"),
    "sending": _("Sending…"),
    "not_sent": _("Not sent."),
    "retry": _("Retry"),
    "connecting": _("Connecting…"),
    "reconnecting": _("Connection lost. Reconnecting…"),
    "email_prompt": _("Leave your e-mail and we will answer there if you are no longer here."),
    "email_label": _("Your e-mail"),
    "email_save": _("Save"),
    "email_saved": _("If you leave, we will answer at {email}."),
    "email_invalid": _("That e-mail address does not look right."),
    "unread": _("{count} unread messages"),
    "error": _("Something went wrong. Please try again."),
}


def widget_strings() -> dict[str, dict[str, str]]:
    """Every widget string in every locale, for the script to pick from."""
    return {
        locale: {key: translate(text, locale) for key, text in WIDGET_STRINGS.items()}
        for locale in LOCALES
    }
