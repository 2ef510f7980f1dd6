"""Every asset against a real pgserver PostgreSQL, through dg.materialize."""

from __future__ import annotations

from typing import Any

import dagster as dg
import numpy as np
import pytest

from rap_assets.assets import ARTIST_ASSETS, CORPUS_ASSETS
from rap_assets.cache import Cache
from rap_assets.checks import ALL_CHECKS
from rap_assets.warehouse import Warehouse

from .conftest import asset_metadata, sample_resources


def _materialize(
    instance: dg.DagsterInstance, resources: dict[str, object], key: str, **kwargs: Any
) -> dg.ExecuteInProcessResult:
    if key not in instance.get_dynamic_partitions("artists"):
        instance.add_dynamic_partitions("artists", [key])
    return dg.materialize(
        ARTIST_ASSETS, partition_key=key, instance=instance, resources=resources, **kwargs
    )


def test_artist_partition_materializes_every_stage(
    database_url: str, instance: dg.DagsterInstance
) -> None:
    resources = sample_resources(database_url)
    result = _materialize(instance, resources, "kilo-vance")
    assert result.success
    index = asset_metadata(result, "genius_song_index")
    assert index["songs_listed"] == 12
    assert index["rows_written"] == 12
    assert index["rows_skipped"] == 1  # the tracklist
    assert "non-song: tracklist" in index["skipped_by_reason"]
    assert index["source"].startswith("sample corpus")
    lyrics = asset_metadata(result, "genius_lyrics")
    assert lyrics["lyrics"] == 11 and lyrics["rows_failed"] == 0
    spotify = asset_metadata(result, "spotify_tracks")
    assert spotify["matched"] == 11 and spotify["unmatched"] == 0
    assert spotify["audio_features_available"] is True

    warehouse = Warehouse(database_url=database_url)
    songs, with_lyrics, sections, features, analyses, vectors = warehouse.fetch_all(
        """SELECT (SELECT count(*) FROM songs), (SELECT count(*) FROM lyrics WHERE status = 'lyrics'),
                  (SELECT count(*) FROM lyric_sections), (SELECT count(*) FROM lyric_features),
                  (SELECT count(*) FROM analyses), (SELECT count(*) FROM song_embeddings)"""
    )[0]
    assert (songs, with_lyrics, features, analyses, vectors) == (12, 11, 11, 11, 11)
    assert sections >= 20
    # a featured verse keeps its performer
    performers = warehouse.fetch_all(
        """SELECT performers FROM lyric_sections JOIN songs USING (song_id)
            WHERE songs.title = 'Round Three' AND header = 'Verse 2'"""
    )
    assert performers == [(["Sister Solace"],)]
    # never the live or sped-up decoy
    names = [
        r[0]
        for r in warehouse.fetch_all(
            "SELECT name FROM spotify_tracks WHERE match_status = 'matched'"
        )
    ]
    assert not any(" - Live" in n or "Sped Up" in n for n in names)


def test_rematerializing_an_unchanged_partition_writes_nothing(
    database_url: str, instance: dg.DagsterInstance
) -> None:
    cache = Cache(namespace="unchanged")
    resources = sample_resources(database_url, cache)
    assert _materialize(instance, resources, "neon-ricky").success
    before = Warehouse(database_url=database_url).fetch_all("SELECT max(updated_at) FROM songs")
    second = _materialize(instance, resources, "neon-ricky")
    assert second.success
    for asset in (
        "genius_song_index",
        "genius_lyrics",
        "spotify_tracks",
        "lyric_features",
        "lyric_analyses",
        "lyric_embeddings",
    ):
        assert asset_metadata(second, asset)["rows_written"] == 0, asset
    # the listing came from the cache, so Genius was not asked again
    index = asset_metadata(second, "genius_song_index")
    assert index["listing_from_cache"] is True
    assert index.get("http_requests", 0) == 0
    assert asset_metadata(second, "spotify_tracks")["api_calls"] == 0
    assert (
        Warehouse(database_url=database_url).fetch_all("SELECT max(updated_at) FROM songs")
        == before
    )


def test_full_refresh_refetches(database_url: str, instance: dg.DagsterInstance) -> None:
    resources = sample_resources(database_url)
    assert _materialize(instance, resources, "quiet-harbor").success
    config = {
        "ops": {
            name: {"config": {"full_refresh": True}}
            for name in ("genius_song_index", "genius_lyrics", "lyric_features")
        }
    }
    again = _materialize(instance, resources, "quiet-harbor", run_config=config)
    assert asset_metadata(again, "genius_lyrics")["rows_written"] == 10
    assert asset_metadata(again, "genius_lyrics")["refetched_same_content"] == 10
    assert asset_metadata(again, "genius_song_index")["rows_skipped"] == 1  # unreleased demo


def test_instrumentals_and_unreleased_are_recorded_not_analysed(
    database_url: str, instance: dg.DagsterInstance
) -> None:
    resources = sample_resources(database_url)
    assert _materialize(instance, resources, "old-man-ellis").success
    assert _materialize(instance, resources, "quiet-harbor").success
    warehouse = Warehouse(database_url=database_url)
    assert warehouse.fetch_all(
        "SELECT s.title, l.status FROM lyrics l JOIN songs s USING (song_id) WHERE l.status <> 'lyrics'"
    ) == [("Porch Light Stories (Instrumental)", "instrumental")]
    assert warehouse.fetch_all(
        "SELECT title, skip_reason FROM songs WHERE skip_reason IS NOT NULL"
    ) == [("Unreleased Demo", "lyrics_state=unreleased")]
    instrumental_analyses = warehouse.fetch_all(
        "SELECT count(*) FROM analyses a JOIN lyrics l USING (song_id) WHERE l.status = 'instrumental'"
    )
    assert instrumental_analyses == [(0,)]


def test_unknown_partition_fails_clearly(database_url: str, instance: dg.DagsterInstance) -> None:
    result = _materialize(
        instance, sample_resources(database_url), "not-on-the-watchlist", raise_on_error=False
    )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "not on the watchlist" in (
        failure.step_failure_data.error.message if failure.step_failure_data.error else ""
    )


def test_corpus_assets_and_checks(database_url: str, instance: dg.DagsterInstance) -> None:
    resources = sample_resources(database_url)
    for key in ("kilo-vance", "sister-solace", "lil-crescent"):
        assert _materialize(instance, resources, key).success
    result = dg.materialize(
        [*ARTIST_ASSETS, *CORPUS_ASSETS, *ALL_CHECKS],
        instance=instance,
        resources=resources,
        selection=[a.key for a in CORPUS_ASSETS],
    )
    assert result.success
    index = asset_metadata(result, "search_index")
    assert index["vectors_indexed"] == 32
    assert index["rebuilt"] is True
    evaluation = asset_metadata(result, "evaluation_metrics")
    assert evaluation["status"] == "not evaluated"
    assert "too few LLM-labelled songs: 0 < 30" in evaluation["reason"]
    assert evaluation["rows_written"] == 0
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    # nothing was evaluated, so the warn-severity comparison cannot pass
    assert checks == {
        "search_index_covers_all_vectors": True,
        "learned_model_beats_rule_based": False,
    }
    assert asset_metadata(result, "evaluation_dataset")["labelled_songs"] == 0
    assert "no trained model yet" in asset_metadata(result, "predicted_quality")["status"]

    again = dg.materialize(CORPUS_ASSETS, instance=instance, resources=resources)
    assert asset_metadata(again, "search_index")["rebuilt"] is False
    assert asset_metadata(again, "search_index")["rows_written"] == 0


def test_partition_checks_pass_on_sample_data(
    database_url: str, instance: dg.DagsterInstance
) -> None:
    resources = sample_resources(database_url)
    instance.add_dynamic_partitions("artists", ["lil-crescent"])
    result = dg.materialize(
        [*ARTIST_ASSETS, *ALL_CHECKS],
        partition_key="lil-crescent",
        instance=instance,
        resources=resources,
        selection=[a.key for a in ARTIST_ASSETS],
    )
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "lyrics_have_no_page_chrome": True,
        "spotify_matches_are_consistent": True,
        "every_song_is_embedded": True,
    }


def test_embeddings_are_unit_vectors_with_section_chunks(
    database_url: str, instance: dg.DagsterInstance
) -> None:
    assert _materialize(instance, sample_resources(database_url), "sister-solace").success
    warehouse = Warehouse(database_url=database_url)
    vectors = [
        v.to_numpy() for (v,) in warehouse.fetch_all("SELECT embedding FROM song_embeddings")
    ]
    assert all(abs(np.linalg.norm(v) - 1) < 1e-4 for v in vectors)
    per_song = warehouse.fetch_all(
        """SELECT e.song_id, count(c.*) FROM song_embeddings e
             JOIN section_embeddings c USING (song_id, model) GROUP BY e.song_id"""
    )
    assert per_song and all(n >= 2 for _, n in per_song)


@pytest.mark.parametrize("use_redis", [True, False])
def test_cache_backend_is_reported_inasset_metadata(
    database_url: str, instance: dg.DagsterInstance, use_redis: bool, request: pytest.FixtureRequest
) -> None:
    cache = (
        Cache(
            redis_url=request.getfixturevalue("redis_url"),
            namespace=request.getfixturevalue("redis_namespace"),
        )
        if use_redis
        else Cache(namespace="report")
    )
    result = _materialize(instance, sample_resources(database_url, cache), "kilo-vance")
    assert asset_metadata(result, "genius_song_index")["cache_backend"] == (
        "redis" if use_redis else "in-process"
    )
