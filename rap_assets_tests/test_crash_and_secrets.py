"""A run killed mid-partition converges on rerun, and secrets never reach logs or metadata."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import dagster as dg
import pytest

from rap_assets.assets import ARTIST_ASSETS
from rap_assets.cache import Cache
from rap_assets.warehouse import Warehouse

from .conftest import REPO, sample_resources
from .fakes import FakeGenius

TOKEN = "sekret-genius-token-kill-test-42"


@pytest.fixture
def slow_fake() -> Iterator[FakeGenius]:
    with FakeGenius(page_delay=0.4).running() as server:
        yield server


def _counts(url: str) -> tuple[int, int, int, int]:
    return Warehouse(database_url=url).fetch_all(
        """SELECT (SELECT count(*) FROM songs), (SELECT count(*) FROM lyrics),
                  (SELECT count(*) FROM lyric_sections),
                  (SELECT count(*) FROM (SELECT DISTINCT song_id, ordinal FROM lyric_sections) d)"""
    )[0]


def test_killing_a_partition_run_and_rerunning_leaves_no_duplicates(
    database_url: str, slow_fake: FakeGenius
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "GENIUS_ACCESS_TOKEN": TOKEN,
        "GENIUS_API_BASE_URL": slow_fake.api_base,
        "GENIUS_WEB_BASE_URL": slow_fake.base,
    }
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rap_assets_tests.run_partition", "kilo-vance"],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if Warehouse(database_url=database_url).fetch_all(
                "SELECT to_regclass('lyrics') IS NOT NULL"
            )[0][0]:
                lyrics = Warehouse(database_url=database_url).fetch_all(
                    "SELECT count(*) FROM lyrics"
                )[0][0]
                if lyrics >= 4:
                    break
            assert proc.poll() is None, "the run finished before it could be killed"
            time.sleep(0.1)
        else:
            pytest.fail("the run never wrote lyrics")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    songs, lyrics_before, _, _ = _counts(database_url)
    assert songs == 12 and 4 <= lyrics_before < 11
    pages_before = sum(1 for r in slow_fake.log if not r.path.startswith("/api/"))

    resources = {
        **sample_resources(database_url, Cache(namespace="kill-rerun")),
        "genius": slow_fake.source(TOKEN),
    }
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("artists", ["kilo-vance"])
        assert dg.materialize(
            ARTIST_ASSETS, partition_key="kilo-vance", instance=instance, resources=resources
        ).success
    songs, lyrics, sections, distinct_sections = _counts(database_url)
    assert (songs, lyrics) == (12, 11)
    assert sections == distinct_sections
    pages_after = sum(1 for r in slow_fake.log if not r.path.startswith("/api/"))
    # only the songs the killed run had not committed were fetched again
    assert pages_after - pages_before == 11 - lyrics_before


def test_token_never_appears_in_event_logs_or_metadata(database_url: str) -> None:
    with FakeGenius().running() as fake, dg.instance_for_test() as instance:
        fake_resources = {
            **sample_resources(database_url),
            "genius": fake.source(TOKEN),
        }
        instance.add_dynamic_partitions("artists", ["neon-ricky"])
        result = dg.materialize(
            ARTIST_ASSETS, partition_key="neon-ricky", instance=instance, resources=fake_resources
        )
        assert result.success
        assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in fake.log)
        records = instance.all_logs(result.run_id)
        text = "\n".join(str(r.dagster_event) + (r.user_message or "") for r in records)
        assert "genius_song_index" in text and TOKEN not in text
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and TOKEN not in str(run.run_config)
