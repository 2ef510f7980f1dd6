"""Spotify: the matching table, and the client over real HTTP against a local fake Spotify."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from rap_assets.assets import genius_lyrics, genius_song_index, spotify_tracks
from rap_assets.cache import Cache
from rap_assets.matching import SongToMatch, best_match, normalize_title
from rap_assets.spotify import SpotifySource
from rap_assets.warehouse import Warehouse

from .conftest import FIXTURES, asset_metadata, sample_resources
from .fakes import FakeSpotify, Fault

SECRET = "spotify-client-secret-0xdeadbeef"


def t(
    track_id: str, name: str, *artists: str, year: int = 2020, duration: int = 200_000
) -> dict[str, Any]:
    return {
        "id": track_id,
        "name": name,
        "artists": [{"name": a} for a in artists],
        "album": {"release_date": f"{year}-01-01"},
        "duration_ms": duration,
    }


def s(title: str, artist: str, *featured: str, year: int | None = 2020) -> SongToMatch:
    return SongToMatch(song_id=1, title=title, artist=artist, featured=featured, year=year)


ORIGINAL = t("orig", "Paper Cuts", "Kilo Vance")
REMIX = t("remix", "Paper Cuts - Remix", "Kilo Vance")
LIVE = t("live", "Paper Cuts - Live", "Kilo Vance")
SPED = t("sped", "Paper Cuts (Sped Up)", "Kilo Vance")
ACOUSTIC = t("acoustic", "Paper Cuts - Acoustic Version", "Kilo Vance")
INSTRUMENTAL = t("instr", "Paper Cuts (Instrumental)", "Kilo Vance")
CLEAN = t("clean", "Paper Cuts - Clean", "Kilo Vance")
VERSIONS = [ORIGINAL, REMIX, LIVE, SPED, ACOUSTIC, INSTRUMENTAL, CLEAN]

#: (song, candidates, expected track id or None)
CASES: list[tuple[SongToMatch, list[dict[str, Any]], str | None]] = [
    # every version finds itself and nothing else
    (s("Paper Cuts", "Kilo Vance"), VERSIONS, "orig"),
    (s("Paper Cuts (Remix)", "Kilo Vance"), VERSIONS, "remix"),
    (s("Paper Cuts (Live)", "Kilo Vance"), VERSIONS, "live"),
    (s("Paper Cuts (Sped Up)", "Kilo Vance"), VERSIONS, "sped"),
    (s("Paper Cuts (Acoustic)", "Kilo Vance"), VERSIONS, "acoustic"),
    (s("Paper Cuts (Instrumental)", "Kilo Vance"), VERSIONS, "instr"),
    (s("Paper Cuts (Clean)", "Kilo Vance"), VERSIONS, "clean"),
    # only variants on offer: the original stays unmatched, and vice versa
    (s("Paper Cuts", "Kilo Vance"), [REMIX, LIVE, SPED], None),
    (s("Paper Cuts (Remix)", "Kilo Vance"), [ORIGINAL, LIVE], None),
    (s("Paper Cuts (Live)", "Kilo Vance"), [ORIGINAL], None),
    (s("Paper Cuts (Sped Up)", "Kilo Vance"), [ORIGINAL, REMIX], None),
    (
        s("Paper Cuts", "Kilo Vance"),
        [t("slowed", "Paper Cuts - Slowed + Reverb", "Kilo Vance")],
        None,
    ),
    # featured artists, in every spelling
    (
        s("Round Three", "Kilo Vance", "Sister Solace"),
        [t("r3", "Round Three (feat. Sister Solace)", "Kilo Vance", "Sister Solace")],
        "r3",
    ),
    (
        s("Round Three (Ft. Sister Solace)", "Kilo Vance", "Sister Solace"),
        [t("r3", "Round Three (with Sister Solace)", "Kilo Vance", "Sister Solace")],
        "r3",
    ),
    (
        s("Round Three", "Kilo Vance", "Sister Solace"),
        [
            t("r3", "Round Three - feat. Sister Solace", "Kilo Vance", "Sister Solace"),
            t("x", "Round Three", "Someone Else"),
        ],
        "r3",
    ),
    (
        s("Round Three", "Kilo Vance"),
        [t("r3", "Round Three [feat. Sister Solace]", "Kilo Vance", "Sister Solace")],
        "r3",
    ),
    (
        s("Crossfire Syntax", "Kilo Vance", "Old Man Ellis"),
        [
            t("solo", "Crossfire Syntax", "Kilo Vance", year=2021),
            t(
                "duo",
                "Crossfire Syntax (feat. Old Man Ellis)",
                "Kilo Vance",
                "Old Man Ellis",
                year=2021,
            ),
        ],
        "duo",
    ),
    # accents and diacritics
    (s("Beyoncé", "Sister Solace"), [t("b", "Beyonce", "Sister Solace")], "b"),
    (s("Café Noir", "Neon Ricky"), [t("c", "Cafe Noir", "Neon Ricky")], "c"),
    (s("Sugar Rush", "Néon Ricky"), [t("sr", "Sugar Rush", "Neon Ricky")], "sr"),
    (s("Piñata Party", "Neon Ricky"), [t("p", "Pinata Party", "Neon Ricky")], "p"),
    # "&" and "and", punctuation, case
    (
        s("Ballot & Bullhorn", "Sister Solace"),
        [t("bb", "Ballot and Bullhorn", "Sister Solace")],
        "bb",
    ),
    (s("Roots and Routers", "Sister Solace"), [t("rr", "Roots & Routers", "Sister Solace")], "rr"),
    (s("3 A.M. Inventory", "Quiet Harbor"), [t("3am", "3 AM Inventory", "Quiet Harbor")], "3am"),
    (s("Mama's Prayers", "Lil Crescent"), [t("mp", "Mamas Prayers", "Lil Crescent")], "mp"),
    (s("DRIP FORECAST", "Lil Crescent"), [t("df", "Drip Forecast", "Lil Crescent")], "df"),
    # same title, other artist
    (
        s("Muse", "PARTYNEXTDOOR"),
        [t("muse-band", "Muse", "Muse"), t("pnd", "Muse", "PARTYNEXTDOOR")],
        "pnd",
    ),
    (s("Eclipse", "Lil Crescent"), [t("other", "Eclipse", "Pink Floyd", year=1973)], None),
    (
        s("Static", "Quiet Harbor"),
        [t("o1", "Static", "Someone"), t("qh", "Static", "Quiet Harbor")],
        "qh",
    ),
    (
        s("Low Tide", "Quiet Harbor"),
        [t("o2", "Low Tide", "The Tides"), t("o3", "Low Tide", "Another Band")],
        None,
    ),
    # remasters are the same recording; different songs with similar titles are not
    (
        s("Porch Light", "Old Man Ellis"),
        [t("pl", "Porch Light - 2021 Remaster", "Old Man Ellis")],
        "pl",
    ),
    (
        s("Porch Light", "Old Man Ellis"),
        [t("pls", "Porch Light Stories", "Old Man Ellis"), t("pl", "Porch Light", "Old Man Ellis")],
        "pl",
    ),
    (
        s("Moon Money", "Lil Crescent"),
        [t("mm2", "Moon Money 2", "Lil Crescent"), t("mm", "Moon Money", "Lil Crescent")],
        "mm",
    ),
    # release year breaks a tie between two recordings of one title
    (
        s("Witness Stand", "Old Man Ellis", year=2018),
        [
            t("w24", "Witness Stand", "Old Man Ellis", year=2024),
            t("w18", "Witness Stand", "Old Man Ellis", year=2018),
        ],
        "w18",
    ),
    (s("Nothing Here", "Nobody"), [], None),
]


def test_matching_table_is_at_least_95_percent_correct_with_no_version_mismatch() -> None:
    assert len(CASES) >= 30
    correct, version_mismatches = 0, []
    for song, candidates, expected in CASES:
        result = best_match(song, candidates)
        got = result.track["id"] if result.track else None
        correct += got == expected
        if (
            result.track
            and normalize_title(result.track["name"]).markers != normalize_title(song.title).markers
        ):
            version_mismatches.append((song.title, result.track["name"]))
        if result.track:
            assert 0 <= result.confidence <= 1 and result.margin >= 0
        else:
            assert result.reason
    assert correct / len(CASES) >= 0.95, f"{correct}/{len(CASES)}"
    assert version_mismatches == []


@pytest.fixture
def fake() -> Iterator[FakeSpotify]:
    with FakeSpotify(FIXTURES / "spotify-api").running() as server:
        yield server


def _source(fake: FakeSpotify, **overrides: Any) -> SpotifySource:
    return SpotifySource(
        client_id="client-id",
        client_secret=SECRET,
        api_base_url=fake.base,
        auth_url=f"{fake.base}/api/token",
        **overrides,
    )


def test_recorded_search_response_is_parsed_and_matched(fake: FakeSpotify) -> None:
    client = _source(fake).client()
    assert (
        client.match(s("Muse", "PARTYNEXTDOOR", year=None), 0.75).track["id"]
        == "41ipOYFGT2MW4dvOPkoK1f"
    )  # type: ignore[index]
    assert (
        client.match(s("Hysteria", "Muse", year=None), 0.75).track["id"] == "7xyYsOvq5Ec3P4fr6mM9fD"
    )  # type: ignore[index]
    assert client.match(s("Muse", "Muse", year=None), 0.75).track is None
    (search, *_) = fake.api_requests()
    assert "limit=10" in search.path and "track%3A%22Muse%22" in search.path


def test_429_retry_after_is_honoured(fake: FakeSpotify) -> None:
    fake.fail_next(Fault("status", 429, {"Retry-After": "1"}, path_prefix="/v1/search"))
    client = _source(fake).client()
    started = time.monotonic()
    assert client.search_tracks("Moon Money", "Lil Crescent")
    assert time.monotonic() - started >= 1.0
    searches = [r.at for r in fake.api_requests() if r.path.startswith("/v1/search")]
    assert len(searches) == 2 and searches[1] - searches[0] >= 1.0


def test_5xx_is_retried_with_backoff(fake: FakeSpotify) -> None:
    fake.fail_next(
        Fault("status", 502, path_prefix="/v1/tracks"),
        Fault("status", 503, path_prefix="/v1/tracks"),
    )
    client = _source(fake).client()
    ids = [t["id"] for t in client.search_tracks("Moon Money", "Lil Crescent")]
    assert client.tracks(ids)[0]["id"] == ids[0]
    assert len([r for r in fake.api_requests() if r.path.startswith("/v1/tracks")]) == 3


def test_token_expiry_mid_run_is_refreshed_transparently(fake: FakeSpotify) -> None:
    fake.token_seconds = 61  # spotipy renews a token with under 60 s left
    client = _source(fake).client()
    client.search_tracks("Moon Money", "Lil Crescent")
    time.sleep(2.1)  # spotipy counts whole seconds
    client.search_tracks("Eclipse", "Lil Crescent")
    assert fake.tokens == ["token-1", "token-2"]
    # and a token the server expired early: one 401, a new token, the call goes through
    fake.token_seconds = 3600
    client.search_tracks("Lunar Lux", "Lil Crescent")
    fake.revoke_tokens()
    assert client.search_tracks("Big Bag Theory", "Lil Crescent")
    assert fake.tokens == ["token-1", "token-2", "token-3"]
    assert fake.api_requests()[-1].headers["Authorization"] == "Bearer token-3"
    assert not Path(".cache").exists()  # spotipy's default would have written the token there


def _materialize(
    database_url: str, fake: FakeSpotify, cache: Cache, key: str = "lil-crescent", **overrides: Any
) -> dg.ExecuteInProcessResult:
    resources = {**sample_resources(database_url, cache), "spotify": _source(fake, **overrides)}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("artists", [key])
        return dg.materialize(
            [genius_song_index, genius_lyrics, spotify_tracks],
            partition_key=key,
            instance=instance,
            resources=resources,
        )


def test_audio_features_403_is_recorded_once_and_the_asset_succeeds(
    database_url: str, fake: FakeSpotify
) -> None:
    fake.forbidden.add("/v1/audio-features")
    result = _materialize(database_url, fake, Cache(namespace=f"sp-{uuid.uuid4().hex[:8]}"))
    assert result.success
    meta = asset_metadata(result, "spotify_tracks")
    assert meta["audio_features_available"] is False
    assert (
        meta["unavailable_for_this_app"] == "audio-features (HTTP 403: not available to this app)"
    )
    assert meta["matched"] == 11
    assert (
        len([r for r in fake.api_requests() if r.path.startswith("/v1/audio-features")]) == 1
    )  # not retried
    rows = Warehouse(database_url=database_url).fetch_all(
        "SELECT count(*), count(energy), count(popularity) FROM spotify_tracks WHERE match_status = 'matched'"
    )
    assert rows == [(11, 0, 11)]


def test_restricted_artist_fields_are_stored_as_null(database_url: str, fake: FakeSpotify) -> None:
    fake.strip_artist_fields = True
    meta = asset_metadata(
        _materialize(database_url, fake, Cache(namespace=f"sp-{uuid.uuid4().hex[:8]}")),
        "spotify_tracks",
    )
    assert "artist followers/popularity" in meta["unavailable_for_this_app"]
    rows = Warehouse(database_url=database_url).fetch_all(
        "SELECT spotify_id IS NOT NULL, spotify_followers, spotify_popularity, spotify_genres FROM artists"
    )
    assert rows == [(True, None, None, ["trap", "southern hip hop"])]


def test_rerunning_an_unchanged_partition_makes_no_http_calls(
    database_url: str, fake: FakeSpotify
) -> None:
    cache = Cache(namespace=f"sp-{uuid.uuid4().hex[:8]}")
    first = asset_metadata(_materialize(database_url, fake, cache), "spotify_tracks")
    assert first["matched"] == 11
    assert first["confidence_histogram"].count("|") > 4
    followers = Warehouse(database_url=database_url).fetch_all(
        "SELECT spotify_followers FROM artists"
    )
    assert followers == [(2304100,)]
    calls = len(fake.log)
    second = asset_metadata(
        _materialize(database_url, fake, Cache(namespace=f"sp-{uuid.uuid4().hex[:8]}")),
        "spotify_tracks",
    )
    assert len(fake.log) == calls  # not even a token request
    assert second["rows_written"] == 0 and second["api_calls"] == 0


def test_secrets_never_reach_logs(fake: FakeSpotify, caplog: pytest.LogCaptureFixture) -> None:
    import base64

    basic = base64.b64encode(f"client-id:{SECRET}".encode()).decode()
    with caplog.at_level(logging.DEBUG):
        client = _source(fake).client()
        client.search_tracks("Moon Money", "Lil Crescent")
    assert fake.tokens
    assert SECRET not in caplog.text and basic not in caplog.text
    assert all(token not in caplog.text for token in fake.tokens)


def test_batch_calls_respect_spotify_chunk_limits(fake: FakeSpotify) -> None:
    from rap_assets.sample_corpus import SPOTIFY_DIR

    catalog = __import__("json").loads((SPOTIFY_DIR / "tracks.json").read_text())
    ids = ([track["id"] for track in catalog] * 2)[:120]  # more than one chunk of 100
    client = _source(fake).client()
    assert len(client.tracks(ids)) == len(ids)
    assert len(client.audio_features(ids)) == len(set(ids))
    from urllib.parse import parse_qs, urlsplit

    def sizes(prefix: str) -> list[int]:
        return [
            len(parse_qs(urlsplit(r.path).query)["ids"][0].split(","))
            for r in fake.api_requests()
            if urlsplit(r.path).path.rstrip("/") == prefix
        ]

    assert max(sizes("/v1/tracks")) <= 50 and sum(sizes("/v1/tracks")) == len(ids)
    assert max(sizes("/v1/audio-features")) <= 100 and sum(sizes("/v1/audio-features")) == len(ids)
