"""End to end: dagster-webserver and dagster-daemon on a temporary DAGSTER_HOME; the watchlist
sensor's runs, then a backfill over every partition launched through the GraphQL API."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rap_assets.warehouse import Warehouse

from .conftest import REPO

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, check: Callable[[], Any], timeout: float = 240.0, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


class Dagster:
    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.client.post("/graphql", json={"query": query, "variables": variables or {}})
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    def runs_for_partition(self, key: str) -> list[dict[str, Any]]:
        data = self.graphql(
            """query($key: String!) { runsOrError(filter: {tags: [{key: "dagster/partition", value: $key}]}) {
                 ... on Runs { results { runId status jobName } } } }""",
            {"key": key},
        )
        return data["runsOrError"]["results"]


@pytest.fixture
def dagster(tmp_path: Path, database_url: str) -> Iterator[tuple[Dagster, Path]]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    watchlist = tmp_path / "artists.yaml"
    watchlist.write_text("artists:\n  - name: Kilo Vance\n")
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DATABASE_URL": database_url,
        "RAP_ASSETS_WATCHLIST": str(watchlist),
        "RAP_ASSETS_HOME": str(tmp_path / "home"),
        "RAP_ASSETS_SENSOR_INTERVAL": "1",
    }
    env.pop("REDIS_URL", None)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [
        subprocess.Popen(
            ["dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=(logs / "webserver.log").open("w"),
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            ["dagster-daemon", "run", "-w", "workspace.yaml"],
            cwd=REPO,
            env=env,
            stdout=(logs / "daemon.log").open("w"),
            stderr=subprocess.STDOUT,
        ),
    ]
    client = Dagster(f"http://127.0.0.1:{port}")

    def up() -> bool:
        try:
            return client.client.get("/server_info").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait("dagster-webserver", up, timeout=120)
        yield client, watchlist
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _succeeded(client: Dagster, key: str) -> bool:
    runs = client.runs_for_partition(key)
    failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
    assert not failed, f"run for {key} failed: {failed}"
    return any(r["status"] == "SUCCESS" for r in runs)


def test_sensor_runs_then_backfill_over_all_partitions(
    dagster: tuple[Dagster, Path], database_url: str
) -> None:
    client, watchlist = dagster
    _wait("the sensor's run for kilo-vance", lambda: _succeeded(client, "kilo-vance"))

    watchlist.write_text("artists:\n  - name: Kilo Vance\n  - name: Neon Ricky\n")
    _wait("the sensor's run for neon-ricky", lambda: _succeeded(client, "neon-ricky"))
    assert len(client.runs_for_partition("kilo-vance")) == 1  # the sensor never re-requests

    # everything, as the UI's "Materialize all" launches it: the partitioned assets over every
    # partition, and the unpartitioned search index and evaluation after them
    assets = [
        "genius_song_index",
        "genius_lyrics",
        "spotify_tracks",
        "lyric_features",
        "lyric_analyses",
        "lyric_embeddings",
        "search_index",
        "evaluation_dataset",
        "evaluation_metrics",
        "predicted_quality",
    ]
    launched = client.graphql(
        """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
             __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
        {"params": {"assetSelection": [{"path": [a]} for a in assets], "allPartitions": True}},
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def finished() -> str | None:
        data = client.graphql(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                 ... on PartitionBackfill { status } } }""",
            {"id": backfill_id},
        )
        status = data["partitionBackfillOrError"]["status"]
        assert status not in ("FAILED", "COMPLETED_FAILED", "CANCELED"), status
        return status if status in ("COMPLETED", "COMPLETED_SUCCESS") else None

    _wait("the backfill to complete", finished, timeout=300, every=2)
    songs = Warehouse(database_url=database_url).fetch_all(
        "SELECT a.partition_key, count(*) FROM songs s JOIN artists a USING (artist_id) GROUP BY 1 ORDER BY 1"
    )
    assert songs == [("kilo-vance", 12), ("neon-ricky", 11)]
    indexed = Warehouse(database_url=database_url).fetch_all(
        "SELECT vectors FROM search_index_builds"
    )
    assert indexed == [(21,)]
