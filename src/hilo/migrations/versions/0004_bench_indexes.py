"""Indexes the benchmarks showed missing: message text search and contact search

Revision ID: 0004_bench_indexes
Revises: 0003
Create Date: 2026-12-01 14:00:00

- Message text search. PostgreSQL: GIN on ``to_tsvector('simple', <words of text>)``, and
  ``(workspace_id, created_at)`` to walk a common word's matches newest first. SQLite: the
  FTS5 table ``messages_fts`` (``unicode61``).
- Contact search by any part of a name, phone or e-mail (``LIKE '%…%'``). PostgreSQL:
  pg_trgm GIN indexes on ``lower(name)`` and ``lower(value)`` (the extension is installed
  here when the role may; without it the search still works, by scanning). SQLite: FTS5
  ``trigram`` tables ``contacts_fts`` and ``contact_identities_fts``.

The SQLite FTS5 tables index their table's rows by rowid (external content) and are kept in
step by triggers. A later migration that rebuilds one of those tables on SQLite (a batch
``ALTER`` that copies it) renumbers the rowids and drops the triggers: it must create them
again and run ``INSERT INTO <fts>(<fts>) VALUES ('rebuild')``; so must anyone who runs
``VACUUM`` on the file. None of these objects is described by the models:
``hilo.migrate.include_name`` leaves them out of the schema comparison.
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_bench_indexes"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fts(table: str, column: str, name: str, tokenize: str) -> list[str]:
    """An FTS5 index of ``table.column`` (external content, by rowid) and its triggers.

    The names are this module's constants, never input.
    """
    delete = (
        f"INSERT INTO {name}({name}, rowid, {column}) VALUES ('delete', old.rowid, old.{column});"  # noqa: S608
    )
    insert = f"INSERT INTO {name}(rowid, {column}) VALUES (new.rowid, new.{column});"  # noqa: S608
    return [
        f"CREATE VIRTUAL TABLE {name} USING fts5({column}, content='{table}', "
        f"content_rowid='rowid', tokenize='{tokenize}')",
        f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table} BEGIN {insert} END",
        f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table} BEGIN {delete} END",
        f"CREATE TRIGGER {name}_update AFTER UPDATE OF {column} ON {table} "
        f"BEGIN {delete} {insert} END",
        f"INSERT INTO {name}({name}) VALUES ('rebuild')",  # noqa: S608
    ]


# (table, column, FTS table, tokenizer): words of message text; any three characters of a
# contact's name or identity (what LIKE '%…%' needs).
SQLITE_FTS = (
    ("messages", "text", "messages_fts", "unicode61 remove_diacritics 0"),
    ("contacts", "name", "contacts_fts", "trigram"),
    ("contact_identities", "value", "contact_identities_fts", "trigram"),
)
PG_TRIGRAM = (
    ("contacts", "name", "ix_contacts_name_trgm"),
    ("contact_identities", "value", "ix_contact_identities_value_trgm"),
)
log = logging.getLogger("alembic.runtime.migration")


def _pg_trigram() -> bool:
    """pg_trgm, installed here if missing; False when this role may not install it."""
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).first():
        return True
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        log.warning("pg_trgm could not be installed (%s): contact search will scan", exc.orig)
        return False
    return True


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_messages_text_search",
            "messages",
            # Words of letters and digits only, as FTS5 splits them: the parser would read
            # "R-123456" as the word r and the number -123456.
            [sa.text(r"to_tsvector('simple'::regconfig, regexp_replace(text, '\W+', ' ', 'g'))")],
            postgresql_using="gin",
        )
        # Newest first among a common word's many matches: walk back from the latest.
        op.create_index("ix_messages_workspace_created", "messages", ["workspace_id", "created_at"])
        if _pg_trigram():
            for table, column, name in PG_TRIGRAM:
                op.create_index(
                    name,
                    table,
                    [sa.text(f"lower({column}) gin_trgm_ops")],
                    postgresql_using="gin",
                )
    else:
        for table, column, name, tokenize in SQLITE_FTS:
            for statement in _fts(table, column, name, tokenize):
                op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for _table, _column, name in PG_TRIGRAM:
            op.execute(f"DROP INDEX IF EXISTS {name}")
        op.drop_index("ix_messages_workspace_created", table_name="messages")
        op.drop_index("ix_messages_text_search", table_name="messages")
    else:
        for _table, _column, name, _tokenize in SQLITE_FTS:
            for suffix in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {name}_{suffix}")
            op.execute(f"DROP TABLE IF EXISTS {name}")
