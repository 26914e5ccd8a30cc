"""Schema migrations, run programmatically (``hilo migrate``, tests, ``hilo serve``)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from hilo.settings import normalise_database_url


def alembic_config(url: str) -> Config:
    """An Alembic config for the database at ``url``, using the packaged scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", "hilo:migrations")
    cfg.set_main_option("sqlalchemy.url", normalise_database_url(url))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at ``url`` to ``revision`` (by default every branch's head)."""
    command.upgrade(alembic_config(url), revision)
