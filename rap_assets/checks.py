"""Data-quality checks, run after the asset they guard is materialized."""

import dagster as dg

from rap_assets.assets import (
    evaluation_metrics,
    genius_lyrics,
    lyric_embeddings,
    search_index,
    spotify_tracks,
)
from rap_assets.embeddings import TextEmbedder
from rap_assets.search import index_name_for
from rap_assets.warehouse import Warehouse

# Page chrome that must never be stored as lyrics.
_LEAKS = ["You might also like", "%Embed", "% Contributors", "Translations"]


@dg.asset_check(
    asset=genius_lyrics,
    description="No page chrome ('Embed', 'You might also like', contributor counts) leaked into stored lyrics, and no 'lyrics' row is empty.",
)
def lyrics_have_no_page_chrome(warehouse: Warehouse) -> dg.AssetCheckResult:
    leaked = warehouse.fetch_all(
        """SELECT l.song_id, s.title FROM lyrics l JOIN songs s USING (song_id)
            WHERE l.status = 'lyrics' AND (l.text = '' OR EXISTS (
                  SELECT 1 FROM unnest(string_to_array(l.text, E'\\n')) AS line
                   WHERE line LIKE ANY (%s)))""",
        (_LEAKS,),
    )
    return dg.AssetCheckResult(
        passed=not leaked,
        metadata={
            "bad_songs": len(leaked),
            "examples": ", ".join(str(t) for _, t in leaked[:5]) or "none",
        },
    )


@dg.asset_check(
    asset=spotify_tracks,
    description="Matches carry a Spotify id and a confidence in [0, 1]; unmatched rows say why.",
)
def spotify_matches_are_consistent(warehouse: Warehouse) -> dg.AssetCheckResult:
    rows = warehouse.fetch_all(
        """SELECT count(*) FILTER (WHERE match_status = 'matched' AND (spotify_id IS NULL OR confidence NOT BETWEEN 0 AND 1)),
                  count(*) FILTER (WHERE match_status = 'unmatched' AND unmatched_reason IS NULL),
                  count(*)
             FROM spotify_tracks"""
    )
    bad_matched, bad_unmatched, total = rows[0]
    return dg.AssetCheckResult(
        passed=bad_matched == 0 and bad_unmatched == 0,
        metadata={
            "inconsistent_matches": bad_matched,
            "unexplained_unmatched": bad_unmatched,
            "rows": total,
        },
    )


@dg.asset_check(
    asset=lyric_embeddings,
    description="Every song with lyrics has a vector for the configured embedding model.",
)
def every_song_is_embedded(warehouse: Warehouse, embedder: TextEmbedder) -> dg.AssetCheckResult:
    missing = warehouse.fetch_all(
        """SELECT count(*) FROM lyrics l
            WHERE l.status = 'lyrics'
              AND NOT EXISTS (SELECT 1 FROM song_embeddings e WHERE e.song_id = l.song_id AND e.model = %s)""",
        (embedder.model_name,),
    )[0][0]
    return dg.AssetCheckResult(
        passed=missing == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"songs_without_vector": missing, "model": embedder.model_name},
    )


@dg.asset_check(
    asset=search_index,
    description="The HNSW index exists and covers every vector of the configured model.",
)
def search_index_covers_all_vectors(
    warehouse: Warehouse, embedder: TextEmbedder
) -> dg.AssetCheckResult:
    name = index_name_for(embedder.model_name)
    exists, vectors, recorded = warehouse.fetch_all(
        """SELECT to_regclass(%s) IS NOT NULL,
                  (SELECT count(*) FROM song_embeddings WHERE model = %s),
                  (SELECT vectors FROM search_index_builds WHERE model = %s)""",
        (name, embedder.model_name, embedder.model_name),
    )[0]
    return dg.AssetCheckResult(
        passed=bool(exists) and recorded == vectors,
        metadata={
            "index": name,
            "index_exists": bool(exists),
            "vectors": vectors,
            "recorded_vectors": recorded or 0,
        },
    )


@dg.asset_check(
    asset=evaluation_metrics,
    description="The best learned model beats the rule-based baseline on held-out MAE (warns otherwise).",
)
def learned_model_beats_rule_based(warehouse: Warehouse) -> dg.AssetCheckResult:
    rows = warehouse.fetch_all(
        """SELECT model_name, mae FROM evaluation_runs
            WHERE run_id = (SELECT run_id FROM evaluation_runs ORDER BY evaluated_at DESC LIMIT 1)"""
    )
    maes = dict(rows)
    learned = {name: mae for name, mae in maes.items() if name in ("ridge", "gradient-boosting")}
    if not learned or "rule-based" not in maes:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"status": "not evaluated: no learned model to compare yet"},
        )
    best = min(learned, key=learned.__getitem__)
    return dg.AssetCheckResult(
        passed=learned[best] < maes["rule-based"],
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "best_model": best,
            "best_mae": learned[best],
            "rule_based_mae": maes["rule-based"],
        },
    )


ALL_CHECKS = [
    learned_model_beats_rule_based,
    lyrics_have_no_page_chrome,
    spotify_matches_are_consistent,
    every_song_is_embedded,
    search_index_covers_all_vectors,
]
