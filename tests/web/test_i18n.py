"""Every string of the workspace's templates has its Spanish translation."""

from __future__ import annotations

from jinja2 import nodes

from hilo.i18n import catalogue
from hilo.web.render import TEMPLATES, environment


def template_strings() -> dict[str, set[str]]:
    """The literal strings passed to ``_()`` in each template."""
    env = environment()
    found: dict[str, set[str]] = {}
    for path in sorted(TEMPLATES.glob("*.html")):
        tree = env.parse(path.read_text(encoding="utf-8"))
        for call in tree.find_all(nodes.Call):
            if (
                isinstance(call.node, nodes.Name)
                and call.node.name == "_"
                and call.args
                and isinstance(call.args[0], nodes.Const)
            ):
                found.setdefault(path.name, set()).add(str(call.args[0].value))
    return found


def test_every_template_string_has_a_spanish_translation() -> None:
    spanish = catalogue("es")
    strings = template_strings()
    assert sum(len(s) for s in strings.values()) > 150
    missing = {name: sorted(s - set(spanish)) for name, s in strings.items() if s - set(spanish)}
    assert missing == {}


def test_templates_never_mark_text_as_safe() -> None:
    for path in TEMPLATES.glob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert "|safe" not in text.replace(" ", "") and "Markup(" not in text, path.name
        assert "autoescape false" not in text, path.name
