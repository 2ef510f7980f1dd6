"""Genius ingestion as assets: the circuit breaker failing a partition and the rerun after
recovery, and the cache's seen-set fast path."""

from __future__ import annotations

import time
import uuid

import dagster as dg
import pytest

from rap_assets.assets import genius_lyrics, genius_song_index
from rap_assets.cache import Cache
from rap_assets.warehouse import Warehouse

from .conftest import asset_metadata, sample_resources
from .fakes import FakeGenius

TOKEN = "sekret-genius-token-circuit"


def test_open_circuit_fails_the_partition_naming_genius_and_rerun_fetches_the_rest(
    database_url: str,
) -> None:
    cache = Cache(namespace=f"circuit-{uuid.uuid4().hex[:8]}")
    with FakeGenius().running() as fake, dg.instance_for_test() as instance:
        resources = {
            **sample_resources(database_url, cache),
            "genius": fake.source(
                TOKEN,
                max_attempts=2,
                backoff_base_seconds=0.01,
                circuit_failure_threshold=3,
                circuit_reset_seconds=1.5,
            ),
        }
        instance.add_dynamic_partitions("artists", ["kilo-vance"])
        assets = [genius_song_index, genius_lyrics]
        config = {"ops": {"genius_lyrics": {"config": {"batch_size": 2}}}}
        fake.pages_fail_after = 5  # Genius goes down after five pages
        failed = dg.materialize(
            assets,
            partition_key="kilo-vance",
            instance=instance,
            resources=resources,
            run_config=config,
            raise_on_error=False,
        )
        assert not failed.success
        (failure,) = failed.get_step_failure_events()
        error = failure.step_failure_data.error
        message = error.message if error else ""
        assert "Genius: circuit open after 3 consecutive failures" in message
        assert "a rerun fetches only the rest" in message and TOKEN not in message
        stored = Warehouse(database_url=database_url).fetch_all("SELECT count(*) FROM lyrics")[0][0]
        assert stored == 5  # every page served before the outage was saved, none after

        fake.pages_fail_after = None
        time.sleep(1.6)  # the circuit's cool-down
        pages_before = sum(1 for r in fake.log if not r.path.startswith("/api/"))
        rerun = dg.materialize(
            assets,
            partition_key="kilo-vance",
            instance=instance,
            resources=resources,
            run_config=config,
        )
        assert rerun.success
        pages = sum(1 for r in fake.log if not r.path.startswith("/api/")) - pages_before
        assert pages == 11 - stored
        assert asset_metadata(rerun, "genius_lyrics")["rows_written"] == 11 - stored
        assert (
            Warehouse(database_url=database_url).fetch_all("SELECT count(*) FROM lyrics")[0][0]
            == 11
        )


@pytest.mark.parametrize("backend", ["redis", "in-process"])
def test_seen_set_vouches_only_for_its_own_warehouse(
    backend: str, request: pytest.FixtureRequest, pg_server_url: str
) -> None:
    namespace = (
        request.getfixturevalue("redis_namespace")
        if backend == "redis"
        else f"seen-{uuid.uuid4().hex[:8]}"
    )
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    cache = Cache(redis_url=redis_url, namespace=namespace)
    database_url = request.getfixturevalue("database_url")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("artists", ["neon-ricky"])
        resources = sample_resources(database_url, cache)
        first = dg.materialize(
            [genius_song_index, genius_lyrics],
            partition_key="neon-ricky",
            instance=instance,
            resources=resources,
        )
        assert asset_metadata(first, "genius_lyrics")["seen_set_hits"] == 0
        second = dg.materialize(
            [genius_song_index, genius_lyrics],
            partition_key="neon-ricky",
            instance=instance,
            resources=resources,
        )
        lyrics = asset_metadata(second, "genius_lyrics")
        assert lyrics["seen_set_hits"] == 10 and lyrics["rows_written"] == 0

    # the same cache in front of a new, empty warehouse vouches for nothing there
    from .conftest import _throwaway_database

    with _throwaway_database(pg_server_url, "seen") as other, dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("artists", ["neon-ricky"])
        fresh = dg.materialize(
            [genius_song_index, genius_lyrics],
            partition_key="neon-ricky",
            instance=instance,
            resources=sample_resources(other, cache),
        )
        lyrics = asset_metadata(fresh, "genius_lyrics")
        assert lyrics["seen_set_hits"] == 0 and lyrics["rows_written"] == 10


def test_partition_metadata_reports_requests_retries_latency_and_reasons(database_url: str) -> None:
    from .fakes import Fault

    with FakeGenius().running() as fake, dg.instance_for_test() as instance:
        resources = {
            **sample_resources(database_url),
            "genius": fake.source(TOKEN, backoff_base_seconds=0.01),
        }
        fake.fail_next(
            Fault("status", 503, path_prefix="/api/songs/"),
            Fault("status", 429, {"Retry-After": "0"}, path_prefix="/Kilo"),
        )
        instance.add_dynamic_partitions("artists", ["kilo-vance"])
        result = dg.materialize(
            [genius_song_index, genius_lyrics],
            partition_key="kilo-vance",
            instance=instance,
            resources=resources,
        )
        assert result.success
        index, lyrics = (
            asset_metadata(result, "genius_song_index"),
            asset_metadata(result, "genius_lyrics"),
        )
        assert index["songs_listed"] == 12 and index["songs_new"] == 12
        assert "non-song: tracklist" in str(index["skipped_by_reason"])
        assert (
            index["http_requests"] == 1 + 1 + 11 + 1
        )  # search, listing, 11 song details, one retry
        assert index["http_retries"] == 1
        assert lyrics["songs_fetched"] == 11 and lyrics["http_retries"] == 1
        assert 0 < float(lyrics["http_latency_p50_ms"]) <= float(lyrics["http_latency_p95_ms"])
        text = " ".join(map(str, index.values())) + " ".join(map(str, lyrics.values()))
        assert TOKEN not in text
