"""The PostgreSQL + pgvector warehouse: embedded server, migrations, connection pools, upserts."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg_pool import ConnectionPool
from pydantic import Field, PrivateAttr

from rap_assets.settings import rap_assets_home, sql_dir

log = logging.getLogger(__name__)

#: pg_advisory_lock key that serialises migrations across every process sharing a database.
_MIGRATION_LOCK = 0x7261705F617373  # "rap_ass"
_MIGRATION_FILE = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")
UPSERT_BATCH = 500


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or sql_dir()
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    found: list[Migration] = []
    for path in sorted(directory.iterdir()):
        match = _MIGRATION_FILE.match(path.name)
        if match:
            found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {directory}: {versions}")
    return found


def migrate(database_url: str, directory: Path | None = None) -> list[Migration]:
    """Apply pending migrations, each in its own transaction; return the ones applied.

    Safe to call from many processes at once: a session advisory lock serialises them, and the
    ``schema_migrations`` table records what ran. A migration whose file changed after it was
    applied is an error, not something to silently re-run.
    """
    migrations = discover_migrations(directory)
    applied: list[Migration] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version    integer PRIMARY KEY,
                       name       text NOT NULL,
                       checksum   text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
            done = {version: checksum for version, checksum in rows}
            for migration in migrations:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:03d}_{migration.name} was edited after "
                            "it was applied; add a new migration instead"
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied.append(migration)
                log.info("applied migration %03d_%s", migration.version, migration.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied


def embedded_database_url(home: Path | None = None) -> str:
    """Start, or join, the embedded PostgreSQL 16 + pgvector server under ``RAP_ASSETS_HOME``.

    pgserver serialises start-up with an inter-process file lock and reuses a running postmaster,
    so the webserver, the daemon and every run and step process share one server. The server is
    left running when a process exits (``cleanup_mode=None``): the next process joins it, and the
    data directory persists across restarts.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); pgserver copes
        warnings.simplefilter("ignore")
        import pgserver

    pgdata = (home or rap_assets_home()) / "pgdata"
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    return str(server.get_uri())


def redact_url(url: str) -> str:
    """The URL with any password replaced, fit for logs and metadata."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


_pools: dict[str, ConnectionPool] = {}
_pools_lock = threading.Lock()


def _pool_for(database_url: str, max_size: int) -> ConnectionPool:
    with _pools_lock:
        pool = _pools.get(database_url)
        if pool is None or pool.closed:
            migrate(database_url)
            pool = ConnectionPool(
                database_url,
                min_size=1,
                max_size=max_size,
                configure=register_vector,
                open=True,
                name="rap-assets",
            )
            _pools[database_url] = pool
        return pool


def close_pools() -> None:
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


class Warehouse(dg.ConfigurableResource):
    """The PostgreSQL + pgvector warehouse that every asset writes to.

    With no ``database_url`` it starts or joins the embedded PostgreSQL 16 + pgvector server.
    Pending migrations are applied on first use in each process.
    """

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL; unset means the embedded pgserver under RAP_ASSETS_HOME.",
    )
    pool_max_size: int = Field(default=4, description="Connections per process.")

    _resolved_url: str | None = PrivateAttr(default=None)

    @property
    def url(self) -> str:
        if self._resolved_url is None:
            self._resolved_url = self.database_url or embedded_database_url()
        return self._resolved_url

    @property
    def description_for_humans(self) -> str:
        return "embedded pgserver" if not self.database_url else redact_url(self.database_url)

    @property
    def identity(self) -> str:
        """This warehouse's random id (migration 002), for cache keys that vouch for its rows."""
        return str(self.fetch_all("SELECT identity FROM warehouse_identity")[0][0])

    @property
    def pool(self) -> ConnectionPool:
        return _pool_for(self.url, self.pool_max_size)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; the block is one transaction, committed on success."""
        with self.pool.connection() as conn:
            yield conn

    def fetch_all(
        self, query: str | sql.Composable, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        with self.connection() as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def fetch_dicts(
        self, query: str | sql.Composable, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[dict[str, Any]]:
        with self.connection() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall()

    def upsert(
        self,
        table: str,
        rows: Iterable[dict[str, Any]],
        key: Sequence[str],
        *,
        touch: bool = True,
        batch_size: int = UPSERT_BATCH,
    ) -> int:
        """Insert or update ``rows`` by ``key``, ``batch_size`` rows per transaction.

        Each batch commits on its own, so a crash loses at most the batch in flight and a rerun
        converges to the same rows with no duplicates. Returns the number of rows written.
        """
        return sum(
            self.upsert_batch(table, batch, key, touch=touch) for batch in batched(rows, batch_size)
        )

    def upsert_batch(
        self,
        table: str,
        rows: Sequence[dict[str, Any]],
        key: Sequence[str],
        *,
        touch: bool = True,
        conn: psycopg.Connection[Any] | None = None,
    ) -> int:
        if not rows:
            return 0
        statement = upsert_statement(table, list(rows[0]), key, touch=touch)
        if conn is not None:
            with conn.cursor() as cur:
                cur.executemany(statement, rows)
            return len(rows)
        with self.connection() as own, own.cursor() as cur:
            cur.executemany(statement, rows)
        return len(rows)


def upsert_statement(
    table: str, columns: list[str], key: Sequence[str], *, touch: bool
) -> sql.Composed:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` with identifiers quoted and values as params."""
    updates: list[sql.Composable] = [
        sql.SQL("{col} = EXCLUDED.{col}").format(col=sql.Identifier(c))
        for c in columns
        if c not in key
    ]
    if touch:
        updates.append(sql.SQL("updated_at = now()"))
    action = (
        sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(updates))
        if updates
        else sql.SQL("DO NOTHING")
    )
    return sql.SQL(
        "INSERT INTO {table} ({cols}) VALUES ({vals}) ON CONFLICT ({key}) {action}"
    ).format(
        table=sql.Identifier(table),
        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        vals=sql.SQL(", ").join(sql.Placeholder(c) for c in columns),
        key=sql.SQL(", ").join(map(sql.Identifier, key)),
        action=action,
    )


def batched(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def content_hash(*parts: object) -> str:
    """A stable short hash of the given parts, for change detection."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
        digest.update(b"\x1f")
    return digest.hexdigest()[:32]
