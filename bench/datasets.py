"""Generated data sets: where each is kept, and the working copy a run writes into.

A data set is generated once per (size, seed, generator version) and kept: a SQLite file
under the data directory, or a PostgreSQL database. Every benchmark run works on a copy
(a file copy; ``CREATE DATABASE … TEMPLATE``), so ingest never changes the kept data and
runs are repeatable.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.datagen import GenerateReport, generate
from bench.sizes import Size, check_disk, dataset_name


def _admin(pg_url: str) -> str:
    return pg_url.replace("postgresql+asyncpg://", "postgresql://")


def _with_database(pg_url: str, name: str) -> str:
    base, _sep, _db = _admin(pg_url).rpartition("/")
    return f"{base}/{name}"


async def _pg(pg_url: str, *statements: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(_admin(pg_url))
    try:
        results = []
        for statement in statements:
            results.append(await conn.fetch(statement))
        return results
    finally:
        await conn.close()


def pg_run(pg_url: str, *statements: str) -> list[Any]:
    """Run statements on the PostgreSQL server's admin database."""
    return asyncio.run(_pg(pg_url, *statements))


@dataclass
class Dataset:
    """One kept data set and the secret key its channel rows were encrypted with."""

    backend: str
    size: Size
    seed: int
    data_dir: Path
    pg_url: str

    @property
    def name(self) -> str:
        return dataset_name(self.size, self.seed)

    @property
    def home(self) -> Path:
        """The directory of the data set's key (and, on SQLite, of its file)."""
        return self.data_dir / self.backend / self.name

    @property
    def pg_name(self) -> str:
        return "hilo_bench_" + self.name.replace("-", "_")

    @property
    def url(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.home / 'hilo.db'}"
        return _with_database(self.pg_url, self.pg_name)

    @property
    def secret_key(self) -> str:
        """The data set's HILO_SECRET_KEY (made on first use, kept beside it)."""
        path = self.home / "secret.key"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    def exists(self) -> bool:
        if self.backend == "sqlite":
            return (self.home / "hilo.db").exists()
        rows = pg_run(self.pg_url, f"SELECT 1 FROM pg_database WHERE datname = '{self.pg_name}'")[0]
        return bool(rows)

    def disk_line(self) -> str:
        where = self.data_dir
        if self.backend == "postgres":
            found = pg_run(self.pg_url, "SHOW data_directory")[0][0][0]
            where = Path(found) if Path(found).exists() else self.data_dir
        return check_disk(where, self.size, self.backend)

    def ensure(self, log: Any = print) -> GenerateReport:
        """Generate (or finish generating) the data set; quick when it is complete."""
        import os

        log(self.disk_line())
        os.environ["HILO_SECRET_KEY"] = self.secret_key
        from hilo.settings import get_settings

        get_settings.cache_clear()
        if self.backend == "postgres" and not self.exists():
            pg_run(self.pg_url, f'CREATE DATABASE "{self.pg_name}"')
        return generate(self.url, self.size, self.seed, progress=log)

    def working_copy(self, run_id: str) -> str:
        """A fresh copy of the data set for one run; returns its URL."""
        if self.backend == "sqlite":
            source = self.home / "hilo.db"
            with sqlite3.connect(source) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            target_dir = self.data_dir / "runs" / run_id
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / "hilo.db"
            shutil.copyfile(source, target)
            return f"sqlite:///{target}"
        name = f"hilo_run_{run_id}".replace("-", "_")
        pg_run(
            self.pg_url,
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
            f'CREATE DATABASE "{name}" TEMPLATE "{self.pg_name}"',
        )
        return _with_database(self.pg_url, name)

    def drop(self) -> None:
        """Remove the kept data set itself (and its key)."""
        if self.backend == "postgres":
            pg_run(self.pg_url, f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
        shutil.rmtree(self.home, ignore_errors=True)

    def drop_working_copy(self, url: str) -> None:
        """Remove a run's copy."""
        if self.backend == "sqlite":
            path = Path(url.split(":///", 1)[1])
            shutil.rmtree(path.parent, ignore_errors=True)
            return
        name = url.rpartition("/")[2]
        pg_run(self.pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
