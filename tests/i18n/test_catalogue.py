"""Every user-facing string has its Spanish translation."""

from __future__ import annotations

import ast
from pathlib import Path

import hilo
from hilo import errors
from hilo.i18n import catalogue, negotiate, translate

SRC = Path(hilo.__file__).parent


def marked_strings() -> set[str]:
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "_"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value)
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, errors.HiloError):
            found.add(value.message)
    return found


def test_every_marked_string_has_a_spanish_translation() -> None:
    missing = sorted(marked_strings() - set(catalogue("es")))
    assert missing == []


def test_spanish_translations_keep_their_placeholders() -> None:
    for source, spanish in catalogue("es").items():
        assert source.count("{") == spanish.count("{"), source


def test_translate_fills_placeholders_in_spanish() -> None:
    text = translate("Unknown role. Known roles: {roles}.", "es", roles="admin")
    assert text == "Rol desconocido. Roles conocidos: admin."


def test_negotiate_picks_spanish_for_latin_american_browsers() -> None:
    assert negotiate("es-MX,es;q=0.9,en;q=0.8") == "es"
    assert negotiate("en-GB,en;q=0.9", default="es") == "en"
    assert negotiate("fr-FR", default="en") == "en"
    assert negotiate("garbage;;;q=x", default="es") == "es"
