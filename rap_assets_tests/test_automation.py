"""The watchlist, the sensor's cursor and the refresh schedule."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from rap_assets.automation import WatchlistError, load_watchlist, new_artists, partition_key_for
from rap_assets.definitions import artist_watchlist_sensor, weekly_artist_refresh

from .conftest import REPO


def _write(path: Path, names: list[str]) -> Path:
    path.write_text("artists:\n" + "".join(f"  - name: {n}\n" for n in names))
    return path


def test_repository_watchlist_lists_the_sample_artists() -> None:
    names = [a.name for a in load_watchlist(REPO / "artists.yaml")]
    assert len(names) >= 6
    assert "Kilo Vance" in names


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("artists: nope", "top-level 'artists:' list"),
        ("artists:\n  - genius_id: 3\n", "needs a non-empty 'name'"),
        ("artists:\n  - name: A\n  - name: a\n", "listed twice"),
        ("artists:\n  - name: A\n    genius_id: x\n", "must be an integer"),
        ("artists: [", "not valid YAML"),
        (
            "artists:\n  - name: A\n    genius_slug: ''\n",
            "'genius_slug' must be a non-empty string",
        ),
    ],
)
def test_bad_watchlists_get_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(content)
    with pytest.raises(WatchlistError, match=message):
        load_watchlist(path)


def test_partition_keys_are_stable_slugs() -> None:
    assert partition_key_for("Lil Crescent") == "lil-crescent"
    assert partition_key_for("Beyoncé & JAY-Z") == "beyonce-jay-z"
    with pytest.raises(WatchlistError):
        partition_key_for("!!!")


def test_cursor_never_requests_an_artist_twice(tmp_path: Path) -> None:
    watchlist = load_watchlist(_write(tmp_path / "w.yaml", ["A", "B"]))
    fresh, cursor = new_artists(watchlist, None)
    assert [a.name for a in fresh] == ["A", "B"]
    again, cursor2 = new_artists(watchlist, cursor)
    assert again == [] and json.loads(cursor2) == ["a", "b"]
    grown = load_watchlist(_write(tmp_path / "w.yaml", ["A", "B", "C"]))
    assert [a.name for a in new_artists(grown, cursor2)[0]] == ["C"]


def test_sensor_adds_each_partition_once(
    tmp_path: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    watchlist = _write(tmp_path / "w.yaml", ["Kilo Vance", "Neon Ricky"])
    monkeypatch.setenv("RAP_ASSETS_WATCHLIST", str(watchlist))

    result = artist_watchlist_sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SensorResult)
    assert [r.partition_key for r in result.run_requests or []] == ["kilo-vance", "neon-ricky"]
    (add,) = result.dynamic_partitions_requests or []
    assert list(add.partition_keys or []) == ["kilo-vance", "neon-ricky"]
    instance.add_dynamic_partitions("artists", list(add.partition_keys or []))

    second = artist_watchlist_sensor(
        dg.build_sensor_context(instance=instance, cursor=result.cursor)
    )
    assert isinstance(second, dg.SkipReason)

    _write(watchlist, ["Kilo Vance", "Neon Ricky", "Quiet Harbor"])
    third = artist_watchlist_sensor(
        dg.build_sensor_context(instance=instance, cursor=result.cursor)
    )
    assert isinstance(third, dg.SensorResult)
    assert [r.partition_key for r in third.run_requests or []] == ["quiet-harbor"]


def test_schedule_requests_every_partition(instance: dg.DagsterInstance) -> None:
    instance.add_dynamic_partitions("artists", ["b", "a"])
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=__import__("datetime").datetime(2026, 11, 23, 6)
    )
    requests = weekly_artist_refresh(context)
    assert isinstance(requests, list)
    assert [r.partition_key for r in requests] == ["a", "b"]
    assert len({r.run_key for r in requests}) == 2
