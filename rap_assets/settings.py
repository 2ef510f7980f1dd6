"""Where things live and which environment variables the project reads.

Every environment variable the project reads is named here, so that the README, the compose
env example and this module cannot drift apart (a test checks the README against ENV_VARS).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

#: name -> one-line description; the README's configuration table is checked against this.
ENV_VARS: dict[str, str] = {
    "DATABASE_URL": "PostgreSQL + pgvector warehouse URL. Unset: an embedded PostgreSQL 16 (pgserver).",
    "REDIS_URL": "Redis for the shared cache. Unset: an in-process cache.",
    "RAP_ASSETS_HOME": "State directory for the embedded database and Dagster instance.",
    "RAP_ASSETS_WATCHLIST": "Path of the artist watchlist YAML file.",
    "RAP_ASSETS_REFRESH_CRON": "Cron schedule of the incremental refresh of every artist.",
    "RAP_ASSETS_SENSOR_INTERVAL": "Seconds between evaluations of the watchlist sensor (default 30).",
    "RAP_ASSETS_SQL_DIR": "Directory of numbered SQL migrations (default: sql/ in the checkout).",
    "GENIUS_ACCESS_TOKEN": "Genius API bearer token. Unset: the bundled sample corpus.",
    "GENIUS_API_BASE_URL": "Genius API base URL (tests, proxies).",
    "GENIUS_WEB_BASE_URL": "genius.com base URL for song pages (tests, proxies).",
    "SPOTIPY_CLIENT_ID": "Spotify client-credentials id. Unset: the bundled sample catalog.",
    "SPOTIPY_CLIENT_SECRET": "Spotify client-credentials secret.",
    "SPOTIFY_API_BASE_URL": "Spotify Web API base URL (tests, proxies).",
    "SPOTIFY_AUTH_URL": "Spotify token endpoint (tests, proxies).",
    "LLM_API_KEY": "Key for the OpenAI-compatible LLM endpoint. Unset: the rule-based analyzer.",
    "LLM_BASE_URL": "OpenAI-compatible base URL of the LLM provider.",
    "LLM_MODEL": "LLM model id.",
    "RAP_ASSETS_MODEL_DIR": "Where built embedding models are cached (default $RAP_ASSETS_HOME/models).",
    "RAP_ASSETS_EMBEDDING_BACKEND": "Embedding backend: model2vec (default), minilm, hashing or openai.",
    "EMBEDDING_BASE_URL": "openai embedding backend: the OpenAI-compatible base URL.",
    "EMBEDDING_API_KEY": "openai embedding backend: the API key.",
    "EMBEDDING_MODEL": "openai embedding backend: the model id, e.g. Qwen/Qwen3-Embedding-0.6B.",
    "EMBEDDING_DIM": "openai embedding backend: the vector size the model returns.",
    "RAP_ASSETS_EXECUTOR": "Set to k8s to run each step in its own pod (dagster-k8s k8s_job_executor).",
    "DAGSTER_HOME": "Dagster instance directory (rap-assets sets it to $RAP_ASSETS_HOME/dagster).",
    "DAGSTER_POSTGRES_URL": "Instance storage URL used by deploy/dagster.yaml.",
}


def rap_assets_home() -> Path:
    """The state directory; created on first use."""
    home = Path(os.environ.get("RAP_ASSETS_HOME", ".rap_assets")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def models_dir() -> Path:
    """Where built models (the distilled static embedder) are cached."""
    configured = os.environ.get("RAP_ASSETS_MODEL_DIR")
    return Path(configured).expanduser().resolve() if configured else rap_assets_home() / "models"


def project_root() -> Path:
    """The checkout root (the parent of the package)."""
    return Path(__file__).resolve().parent.parent


def sql_dir() -> Path:
    configured = os.environ.get("RAP_ASSETS_SQL_DIR")
    return Path(configured) if configured else project_root() / "sql"


def watchlist_path() -> Path:
    return Path(os.environ.get("RAP_ASSETS_WATCHLIST", "artists.yaml")).expanduser().resolve()


def optional_env(name: str) -> dg.EnvVar | None:
    """``dg.EnvVar(name)`` when the variable is set, else ``None``.

    Resources take secrets through ``dg.EnvVar`` so that the UI shows the variable's name, never
    its value; an unset optional variable must instead fall back to the embedded default, which
    ``dg.EnvVar`` alone cannot express (it fails on an unset variable).
    """
    return dg.EnvVar(name) if os.environ.get(name) else None


def env_or(name: str, default: str) -> str:
    return os.environ.get(name) or default
