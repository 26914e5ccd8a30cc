"""webchat_visitors: the browsers behind a web chat widget

Revision ID: 0004_webchat
Revises: 0003
Create Date: 2026-11-26 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_webchat"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webchat_visitors",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("channel_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("email_verified", sa.Boolean(), nullable=False),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("phone_verified", sa.Boolean(), nullable=False),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["channel_id"], ["channels.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webchat_visitors") as batch_op:
        batch_op.create_index("ix_webchat_visitors_workspace_id", ["workspace_id"], unique=False)
        batch_op.create_index("ix_webchat_visitors_channel_id", ["channel_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webchat_visitors") as batch_op:
        batch_op.drop_index("ix_webchat_visitors_channel_id")
        batch_op.drop_index("ix_webchat_visitors_workspace_id")
    op.drop_table("webchat_visitors")
