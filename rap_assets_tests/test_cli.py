"""The rap-assets command line against a real pgserver database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from .conftest import REPO


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rap_assets.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_materialize_twice_records_runs_and_writes_nothing_the_second_time(
    database_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "DAGSTER_HOME": str(tmp_path)}
    env.pop("REDIS_URL", None)
    first = _run("materialize", "--artist", "Quiet Harbor", env=env)
    assert first.returncode == 0, first.stderr
    assert "[1/1] quiet-harbor: ok" in first.stdout and "genius_lyrics=10" in first.stdout
    assert "[model] embedding model: ok" in first.stdout
    assert "[corpus] search index + evaluation: ok" in first.stdout

    second = _run("materialize", "--artist", "quiet-harbor", env=env)
    assert second.returncode == 0, second.stderr
    line = next(line for line in second.stdout.splitlines() if line.startswith("[1/1]"))
    assert all(
        part.endswith("=0") for part in line.split("rows written: ")[1].rstrip(")").split(", ")
    )

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path))) as instance:
        runs = instance.get_runs()
    # each materialize: the embedding model, the artist, then the corpus-wide assets
    assert len(runs) == 6 and all(r.is_success for r in runs)
    assert {r.job_name for r in runs} == {"embedding_model", "artist_refresh", "corpus_refresh"}


def test_materialize_exits_non_zero_when_a_run_fails(database_url: str, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DAGSTER_HOME": str(tmp_path),
        "GENIUS_ACCESS_TOKEN": "unused-token",
        "GENIUS_API_BASE_URL": f"http://127.0.0.1:{closed_port}",
        "GENIUS_WEB_BASE_URL": f"http://127.0.0.1:{closed_port}",
    }
    result = _run("materialize", "--artist", "Kilo Vance", env=env)
    assert result.returncode == 1
    assert "FAILED" in result.stdout and "Genius" in result.stdout
    assert "unused-token" not in result.stdout + result.stderr


def test_materialize_rejects_unknown_artists(database_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "DAGSTER_HOME": str(tmp_path)}
    result = _run("materialize", "--artist", "Nobody Famous", env=env)
    assert result.returncode == 2 and "not on the watchlist" in result.stderr


def test_db_migrate_is_idempotent(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    result = _run("db", "migrate", env=env)
    assert result.returncode == 0 and "schema is up to date" in result.stdout


def test_dev_passes_its_options_on_to_dagster_dev() -> None:
    from rap_assets.cli import parse_args

    assert parse_args(["dev", "-p", "3333", "--log-level", "debug"]).dagster_args == [
        "-p",
        "3333",
        "--log-level",
        "debug",
    ]
    assert parse_args(["dev"]).dagster_args == []
    with pytest.raises(SystemExit):
        parse_args(["search", "q", "--bogus"])
