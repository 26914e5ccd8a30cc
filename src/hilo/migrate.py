"""Schema migrations, run programmatically (``hilo migrate``, tests, ``hilo serve``)."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config

from hilo.settings import normalise_database_url


def alembic_config(url: str) -> Config:
    """An Alembic config for the database at ``url``, using the packaged scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", "hilo:migrations")
    cfg.set_main_option("sqlalchemy.url", normalise_database_url(url))
    return cfg


# Kept by migration 0004_bench_indexes, not described by the models: SQLite's FTS5 tables
# (and the shadow tables FTS5 makes for them), PostgreSQL's text-search and trigram indexes.
SEARCH_OBJECTS = (
    "messages_fts",
    "contacts_fts",
    "contact_identities_fts",
    "ix_messages_text_search",
    "ix_messages_workspace_created",
    "ix_contacts_name_trgm",
    "ix_contact_identities_value_trgm",
)


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Whether the schema comparison looks at an object (the search index is left out)."""
    return not (name and name.startswith(SEARCH_OBJECTS))


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at ``url`` to ``revision`` (by default every branch's head)."""
    command.upgrade(alembic_config(url), revision)
