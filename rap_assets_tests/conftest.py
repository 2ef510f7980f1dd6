"""Shared fixtures: a throwaway pgserver PostgreSQL for the session, a fresh database per test,
real Redis, and the repository's sample watchlist."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
import redis

from rap_assets.analysis import LyricAnalyzer
from rap_assets.assets import ARTIST_ASSETS, CORPUS_ASSETS
from rap_assets.automation import load_watchlist
from rap_assets.cache import Cache
from rap_assets.embeddings import TextEmbedder
from rap_assets.genius import GeniusSource
from rap_assets.search import RapSearch
from rap_assets.spotify import SpotifySource
from rap_assets.warehouse import Warehouse, close_pools, migrate

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep tests off the developer's .rap_assets and instance."""
    home = tmp_path_factory.mktemp("rap_assets_home")
    saved = {
        k: os.environ.get(k)
        for k in ("RAP_ASSETS_HOME", "RAP_ASSETS_WATCHLIST", "DAGSTER_HOME", "RAP_ASSETS_MODEL_DIR")
    }
    os.environ["RAP_ASSETS_HOME"] = str(home)
    # one distilled static model for the whole session; subprocesses inherit it
    os.environ["RAP_ASSETS_MODEL_DIR"] = str(tmp_path_factory.mktemp("models"))
    os.environ["RAP_ASSETS_WATCHLIST"] = str(REPO / "artists.yaml")
    os.environ.pop("DAGSTER_HOME", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A PostgreSQL 16 + pgvector server from pgserver, in a data dir deleted after the session."""
    import pgserver

    # a short path keeps the unix socket under the 107-byte limit
    pgdata = Path(tempfile.mkdtemp(prefix="rap-pg-"))
    server = pgserver.get_server(pgdata, cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        close_pools()
        server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


def _database_url(server_url: str, name: str) -> str:
    return server_url.replace("/postgres?", f"/{name}?", 1)


@contextmanager
def _throwaway_database(server_url: str, prefix: str) -> Iterator[str]:
    """A freshly created and migrated database, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _database_url(server_url, name)
    migrate(url)
    try:
        yield url
    finally:
        close_pools()
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    with _throwaway_database(pg_server_url, "t") as url:
        yield url


@pytest.fixture(scope="module")
def module_database_url(pg_server_url: str) -> Iterator[str]:
    with _throwaway_database(pg_server_url, "m") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Real Redis at REDIS_URL (default 127.0.0.1:6379). In CI an unreachable Redis fails the
    test rather than skipping it."""
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError as exc:
        message = f"Redis at {url} is unreachable ({exc}); start it with redis-server"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def redis_namespace(redis_url: str) -> Iterator[str]:
    namespace = f"rap-assets-test-{uuid.uuid4().hex[:8]}"
    yield namespace
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{namespace}:*"))
    if keys:
        client.delete(*keys)


def asset_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    """The one materialization of ``asset`` in ``result``, its metadata as plain values."""
    (mat,) = result.asset_materializations_for_node(asset)
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def sample_resources(database_url: str, cache: Cache | None = None) -> dict[str, object]:
    return {
        "warehouse": Warehouse(database_url=database_url),
        "cache": cache or Cache(namespace=f"test-{uuid.uuid4().hex[:8]}"),
        "genius": GeniusSource(),
        "spotify": SpotifySource(),
        "analyzer": LyricAnalyzer(),
        "embedder": TextEmbedder(),
        "search": RapSearch(database_url=database_url),
    }


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="module")
def corpus_url(module_database_url: str) -> str:
    """A database holding the whole sample corpus, materialized through every asset."""
    resources = sample_resources(module_database_url)
    with dg.instance_for_test() as instance:
        keys = [a.partition_key for a in load_watchlist()]
        instance.add_dynamic_partitions("artists", keys)
        for key in keys:
            assert dg.materialize(
                ARTIST_ASSETS, partition_key=key, instance=instance, resources=resources
            ).success
        assert dg.materialize(CORPUS_ASSETS, instance=instance, resources=resources).success
    return module_database_url
