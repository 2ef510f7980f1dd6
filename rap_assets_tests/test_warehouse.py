"""Migrations and upserts against a real pgserver PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from rap_assets.warehouse import MigrationError, Warehouse, discover_migrations, migrate, redact_url


def test_migrations_are_idempotent_and_recorded(database_url: str) -> None:
    # the fixture already migrated once; a second and third run apply nothing
    assert migrate(database_url) == []
    assert migrate(database_url) == []
    with psycopg.connect(database_url) as conn:
        versions = [
            r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        ]
        tables = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        vector = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
    assert versions == [m.version for m in discover_migrations()]
    assert {
        "artists",
        "songs",
        "lyrics",
        "lyric_sections",
        "spotify_tracks",
        "lyric_features",
        "analyses",
        "song_embeddings",
        "section_embeddings",
        "evaluation_runs",
    } <= tables
    assert vector is not None


def test_concurrent_migrations_serialise(pg_server_url: str) -> None:
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "concurrent_mig"')
        conn.execute('CREATE DATABASE "concurrent_mig"')
    url = pg_server_url.replace("/postgres?", "/concurrent_mig?")
    applied: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            applied.append(len(migrate(url)))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(applied) == [0, 0, 0, len(discover_migrations())]


def test_an_edited_migration_is_refused(database_url: str, tmp_path: Path) -> None:
    for m in discover_migrations():
        (tmp_path / f"{m.version:03d}_{m.name}.sql").write_text(m.sql + "\n-- edited\n")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        migrate(database_url, tmp_path)


def test_a_new_migration_is_applied_once(database_url: str, tmp_path: Path) -> None:
    for m in discover_migrations():
        (tmp_path / f"{m.version:03d}_{m.name}.sql").write_text(m.sql)
    (tmp_path / "999_probe.sql").write_text("CREATE TABLE probe (id int PRIMARY KEY);")
    assert [m.name for m in migrate(database_url, tmp_path)] == ["probe"]
    assert migrate(database_url, tmp_path) == []


def test_upsert_is_idempotent(database_url: str) -> None:
    warehouse = Warehouse(database_url=database_url)
    artist = {"artist_id": 1, "partition_key": "a", "name": "A", "url": None, "image_url": None}
    for _ in range(3):
        assert warehouse.upsert("artists", [artist], key=["artist_id"]) == 1
    warehouse.upsert("artists", [{**artist, "name": "A renamed"}], key=["artist_id"])
    assert warehouse.fetch_all("SELECT artist_id, name FROM artists") == [(1, "A renamed")]


def test_upsert_quotes_identifiers_and_parameterises_values(database_url: str) -> None:
    warehouse = Warehouse(database_url=database_url)
    evil = "x'); DROP TABLE artists; --"
    warehouse.upsert(
        "artists",
        [{"artist_id": 2, "partition_key": evil, "name": evil, "url": None, "image_url": None}],
        key=["artist_id"],
    )
    assert warehouse.fetch_all("SELECT name FROM artists WHERE artist_id = 2") == [(evil,)]


def test_redact_url_hides_passwords() -> None:
    assert redact_url("postgresql://user:s3cret@db:5432/x") == "postgresql://user:***@db:5432/x"
    assert "s3cret" not in redact_url("redis://:s3cret@cache:6379/0")
    assert redact_url("postgresql://db/x") == "postgresql://db/x"
