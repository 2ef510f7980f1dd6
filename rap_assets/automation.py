"""Artist partitions, the watchlist, the sensor that adds artists and the refresh schedule."""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from rap_assets.settings import watchlist_path

ARTISTS = "artists"
artist_partitions = dg.DynamicPartitionsDefinition(name=ARTISTS)

REFRESH_CRON_DEFAULT = "0 6 * * 1"  # Mondays 06:00: weekly, as Genius listings change slowly


class WatchlistError(ValueError):
    pass


@dataclass(frozen=True)
class WatchedArtist:
    name: str
    genius_id: int | None = None
    genius_slug: str | None = None

    @property
    def partition_key(self) -> str:
        return partition_key_for(self.name)


def partition_key_for(name: str) -> str:
    """A stable, URL-safe partition key: "Lil Crescent" -> "lil-crescent"."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    key = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    if not key:
        raise WatchlistError(f"artist name {name!r} has no letters or digits to key a partition on")
    return key


def load_watchlist(path: Path | None = None) -> list[WatchedArtist]:
    """Parse the watchlist YAML; any malformed entry is an error naming the entry."""
    path = path or watchlist_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise WatchlistError(
            f"watchlist {path} does not exist (set RAP_ASSETS_WATCHLIST)"
        ) from None
    except yaml.YAMLError as exc:
        raise WatchlistError(f"watchlist {path} is not valid YAML: {exc}") from None
    entries = data.get("artists") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise WatchlistError(f"watchlist {path} needs a top-level 'artists:' list")
    artists: list[WatchedArtist] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        if isinstance(entry, str):
            entry = {"name": entry}
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("name"), str)
            or not entry["name"].strip()
        ):
            raise WatchlistError(f"watchlist {path}, entry {index}: needs a non-empty 'name'")
        genius_id = entry.get("genius_id")
        if genius_id is not None and not isinstance(genius_id, int):
            raise WatchlistError(f"watchlist {path}, entry {index}: 'genius_id' must be an integer")
        slug = entry.get("genius_slug")
        if slug is not None and (not isinstance(slug, str) or not slug.strip()):
            raise WatchlistError(
                f"watchlist {path}, entry {index}: 'genius_slug' must be a non-empty string"
            )
        artist = WatchedArtist(entry["name"].strip(), genius_id, slug)
        if artist.partition_key in seen:
            raise WatchlistError(
                f"watchlist {path}, entry {index}: {artist.name!r} is listed twice"
            )
        seen.add(artist.partition_key)
        artists.append(artist)
    return artists


def watchlist_entry(partition_key: str, path: Path | None = None) -> WatchedArtist | None:
    return next((a for a in load_watchlist(path) if a.partition_key == partition_key), None)


def new_artists(
    watchlist: list[WatchedArtist], cursor: str | None
) -> tuple[list[WatchedArtist], str]:
    """The watchlist entries never requested before, and the cursor that records them."""
    requested: set[str] = set(json.loads(cursor)) if cursor else set()
    fresh = [a for a in watchlist if a.partition_key not in requested]
    return fresh, json.dumps(sorted(requested | {a.partition_key for a in fresh}))


def build_automation(
    artist_job: UnresolvedAssetJobDefinition,
) -> tuple[dg.SensorDefinition, dg.ScheduleDefinition]:
    @dg.sensor(
        name="artist_watchlist_sensor",
        job=artist_job,
        minimum_interval_seconds=int(os.environ.get("RAP_ASSETS_SENSOR_INTERVAL", "30")),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Adds watchlist artists as partitions and requests one run for each new one.",
    )
    def artist_watchlist_sensor(
        context: dg.SensorEvaluationContext,
    ) -> dg.SensorResult | dg.SkipReason:
        try:
            watchlist = load_watchlist()
        except WatchlistError as exc:
            return dg.SkipReason(str(exc))
        fresh, cursor = new_artists(watchlist, context.cursor)
        if not fresh:
            return dg.SkipReason(f"no new artists among {len(watchlist)} on the watchlist")
        keys = [a.partition_key for a in fresh]
        existing = set(context.instance.get_dynamic_partitions(ARTISTS))
        to_add = [k for k in keys if k not in existing]
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=f"watchlist:{key}", partition_key=key) for key in keys
            ],
            dynamic_partitions_requests=[artist_partitions.build_add_request(to_add)]
            if to_add
            else [],
            cursor=cursor,
        )

    @dg.schedule(
        name="weekly_artist_refresh",
        job=artist_job,
        cron_schedule=os.environ.get("RAP_ASSETS_REFRESH_CRON", REFRESH_CRON_DEFAULT),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Incremental refresh of every artist partition: only new or changed songs are fetched.",
    )
    def weekly_artist_refresh(
        context: dg.ScheduleEvaluationContext,
    ) -> list[dg.RunRequest] | dg.SkipReason:
        keys = context.instance.get_dynamic_partitions(ARTISTS)
        if not keys:
            return dg.SkipReason("no artist partitions yet: the watchlist sensor adds them")
        stamp = context.scheduled_execution_time.strftime("%Y-%m-%dT%H:%M")
        return [
            dg.RunRequest(run_key=f"refresh:{stamp}:{key}", partition_key=key)
            for key in sorted(keys)
        ]

    return artist_watchlist_sensor, weekly_artist_refresh
