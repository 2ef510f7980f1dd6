"""The Dagster code location: assets, checks, jobs, the watchlist sensor, the refresh schedule
and the resources, each configured from the environment (see rap_assets.settings.ENV_VARS)."""

from __future__ import annotations

import os

import dagster as dg

from rap_assets.analysis import LyricAnalyzer
from rap_assets.assets import ARTIST_ASSETS, CORPUS_ASSETS, MODEL_ASSETS
from rap_assets.automation import build_automation
from rap_assets.cache import Cache
from rap_assets.checks import ALL_CHECKS
from rap_assets.embeddings import TextEmbedder, embedding_env
from rap_assets.genius import GeniusSource
from rap_assets.search import RapSearch
from rap_assets.settings import env_or, optional_env
from rap_assets.spotify import SpotifySource
from rap_assets.warehouse import Warehouse


def _executor() -> dg.ExecutorDefinition | None:
    """RAP_ASSETS_EXECUTOR=k8s runs each step in a pod of its own (dagster-k8s); the default is
    the instance's run launcher with steps as processes of the run."""
    choice = os.environ.get("RAP_ASSETS_EXECUTOR", "").strip().lower()
    if not choice:
        return None
    if choice == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"RAP_ASSETS_EXECUTOR={choice!r}: the only option is 'k8s' (or unset)")


# Runs that call an LLM are tagged so the run queue can keep them to one at a time: each paces
# itself to the provider's per-key rate limit, and two at once would exceed it.
_LLM_TAGS = {"rap-assets/llm-bound": "true"} if os.environ.get("LLM_API_KEY") else {}

artist_job = dg.define_asset_job(
    "artist_refresh",
    selection=dg.AssetSelection.assets(*ARTIST_ASSETS),
    description="Scrape, enrich, analyse and embed one artist (one partition).",
    tags=_LLM_TAGS,
    executor_def=_executor(),
)
corpus_job = dg.define_asset_job(
    "corpus_refresh",
    selection=dg.AssetSelection.assets(*CORPUS_ASSETS),
    description="Rebuild the search index, the evaluation and the predicted scores over every artist.",
    executor_def=_executor(),
)
model_job = dg.define_asset_job(
    "embedding_model",
    selection=dg.AssetSelection.assets(*MODEL_ASSETS),
    description="Build the static embedding model the artist runs embed with (once; cached).",
)
artist_watchlist_sensor, weekly_artist_refresh = build_automation(artist_job)


def build_resources() -> dict[str, object]:
    database_url = optional_env("DATABASE_URL")
    # the indexing side and the query side must embed with the same model
    embedding = embedding_env() | {"api_key": optional_env("EMBEDDING_API_KEY")}
    return {
        "warehouse": Warehouse(database_url=database_url),
        "cache": Cache(redis_url=optional_env("REDIS_URL")),
        "genius": GeniusSource(
            access_token=optional_env("GENIUS_ACCESS_TOKEN"),
            api_base_url=env_or("GENIUS_API_BASE_URL", "https://api.genius.com"),
            web_base_url=env_or("GENIUS_WEB_BASE_URL", "https://genius.com"),
        ),
        "spotify": SpotifySource(
            client_id=optional_env("SPOTIPY_CLIENT_ID"),
            client_secret=optional_env("SPOTIPY_CLIENT_SECRET"),
            api_base_url=env_or("SPOTIFY_API_BASE_URL", "https://api.spotify.com"),
            auth_url=env_or("SPOTIFY_AUTH_URL", "https://accounts.spotify.com/api/token"),
        ),
        "analyzer": LyricAnalyzer(
            llm_api_key=optional_env("LLM_API_KEY"),
            llm_base_url=env_or("LLM_BASE_URL", "https://api.novita.ai/openai/v1"),
            llm_model=env_or("LLM_MODEL", "qwen/qwen3-4b-fp8"),
        ),
        "embedder": TextEmbedder(**embedding),
        "search": RapSearch(
            database_url=database_url, **{f"embedding_{k}": v for k, v in embedding.items()}
        ),
    }


defs = dg.Definitions(
    assets=[*MODEL_ASSETS, *ARTIST_ASSETS, *CORPUS_ASSETS],
    asset_checks=ALL_CHECKS,
    jobs=[model_job, artist_job, corpus_job],
    sensors=[artist_watchlist_sensor],
    schedules=[weekly_artist_refresh],
    resources=build_resources(),
)
