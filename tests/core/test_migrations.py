"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

import hilo.models  # noqa: F401
from hilo.db import Base
from hilo.migrate import include_name, upgrade
from hilo.settings import normalise_database_url
from tests.conftest import REQUIRE_PG, _pg_available, create_pg_database, drop_pg_database


def drift(url: str) -> list[Any]:
    async def go() -> list[Any]:
        engine = create_async_engine(normalise_database_url(url))
        async with engine.connect() as conn:
            result: list[Any] = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"include_name": include_name}),
                    Base.metadata,
                )
            )
        await engine.dispose()
        return result

    return asyncio.run(go())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrated_schema_matches_the_models(backend: str, tmp_path: Path) -> None:
    if backend == "postgres":
        reason = _pg_available()
        if reason and not REQUIRE_PG:
            pytest.skip(reason)
        url = create_pg_database()
    else:
        url = f"sqlite:///{tmp_path / 'schema.db'}"
    try:
        upgrade(url)
        assert drift(url) == []
    finally:
        if backend == "postgres":
            drop_pg_database(url)
