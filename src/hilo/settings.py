"""The one settings object, read from ``HILO_*`` environment variables."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def normalise_database_url(url: str) -> str:
    """Map the accepted spellings of a database URL to the async driver SQLAlchemy uses."""
    for prefix, replacement in (
        ("sqlite:///", "sqlite+aiosqlite:///"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql+psycopg://", "postgresql+asyncpg://"),
    ):
        if url.startswith(prefix):
            return replacement + url[len(prefix) :]
    if url.startswith(("sqlite+aiosqlite:///", "postgresql+asyncpg://")):
        return url
    raise ValueError(f"unsupported database URL scheme: {url.split(':', 1)[0]}")


class Settings(BaseSettings):
    """Hilo's configuration. Every field maps to ``HILO_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="HILO_", extra="ignore")

    data_dir: Path = Field(default=Path("hilo-data"))
    database_url: str = ""
    secret_key: str = ""
    public_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    # Live fan-out between processes: "auto" uses PostgreSQL LISTEN/NOTIFY on PostgreSQL and
    # in-process delivery on SQLite; "redis" uses Redis pub/sub at ``redis_url``.
    broker: str = "auto"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Run the durable-job workers inside the API process (the embedded default).
    run_workers: bool = True
    worker_concurrency: int = 4
    # At most this many jobs of a batchable kind (inbound deliveries) in one transaction; 1:
    # every job alone. On SQLite a batch holds the one write lock while it runs.
    worker_batch: int = 20
    # How long a worker holds a job before another may take it (a crashed worker's jobs).
    job_lease_seconds: float = 30.0
    reopen_window_days: int = 7
    max_webhook_bytes: int = 1024 * 1024
    # Files larger than this are not downloaded or accepted (kept as "oversize").
    media_max_bytes: int = 16 * 1024 * 1024
    webhook_clock_skew_seconds: int = 300
    outbound_give_up_hours: float = 24.0
    seal_interval_seconds: float = 0.5
    # Hilo's own SMTP listener for inbound e-mail (port 0: off). Mail for an e-mail
    # channel's addresses is stored; anything else is refused with 550, and a message over
    # ``smtp_max_message_bytes`` with 552.
    smtp_listen_host: str = "127.0.0.1"
    smtp_listen_port: int = 0
    smtp_max_message_bytes: int = 25 * 1024 * 1024
    log_level: str = "INFO"
    # The benchmark's baseline endpoints (/bench/...): never on outside a benchmark run.
    bench_endpoints: bool = False

    @field_validator("database_url")
    @classmethod
    def _accept_urls(cls, value: str) -> str:
        return normalise_database_url(value) if value else value

    @property
    def effective_database_url(self) -> str:
        """The configured database, or the embedded SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'hilo.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is the embedded SQLite file."""
        return self.effective_database_url.startswith("sqlite")

    @property
    def effective_secret_key(self) -> str:
        """The secret key, generated into the data directory on first run when unset."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret.key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        # O_EXCL: two processes starting at once must agree on one key.
        try:
            with path.open("x") as fh:
                fh.write(key)
            path.chmod(0o600)
        except FileExistsError:
            return path.read_text().strip()
        return key


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings."""
    return Settings()
