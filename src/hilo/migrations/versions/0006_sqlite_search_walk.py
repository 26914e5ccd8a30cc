"""SQLite: ``(workspace_id, created_at)`` on messages, to walk a common word's matches back in time

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:10:00

PostgreSQL has had this index since ``0004_bench_indexes``. On SQLite, a message search for a
word held by tens of thousands of messages sorted every match by time; with this index it
walks the workspace's messages from the newest and stops at the page's last match
(``hilo.search.repository``). Like the other search objects it is not described by the
models (``hilo.migrate.SEARCH_OBJECTS``).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("ix_messages_workspace_created", "messages", ["workspace_id", "created_at"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_messages_workspace_created", table_name="messages")
