"""Timezone-aware time, in one place so code never builds a naive datetime."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """Treat a naive datetime read back from SQLite as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
