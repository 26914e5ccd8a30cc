"""merge: media, web chat, agent workspace and search/benchmark index branches

Revision ID: 0005
Revises: 0004_bench_indexes, 0004_media, 0004_web, 0004_webchat
Create Date: 2026-12-01 14:20:00
"""

from collections.abc import Sequence

revision: str = "0005"
down_revision: str | Sequence[str] | None = (
    "0004_bench_indexes",
    "0004_media",
    "0004_web",
    "0004_webchat",
)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
