"""Full-text search of message text (PostgreSQL text search, SQLite FTS5)."""
