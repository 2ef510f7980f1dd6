"""The Genius client over real HTTP against a local fake Genius, with injected faults."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from rap_assets.cache import Cache
from rap_assets.genius import GeniusClient
from rap_assets.resilience import CircuitOpenError, UpstreamError, retry_after_seconds

from .fakes import FakeGenius, Fault

TOKEN = "sekret-genius-token-0123456789"


@pytest.fixture
def fake() -> Iterator[FakeGenius]:
    with FakeGenius().running() as server:
        yield server


def _client(fake: FakeGenius, **overrides: object) -> GeniusClient:
    settings = {
        "requests_per_second": 50.0,
        "timeout_seconds": 0.5,
        "backoff_base_seconds": 0.05,
        "backoff_max_seconds": 5.0,
        **overrides,
    }
    return fake.source(TOKEN, **settings).client(Cache(namespace=f"genius-{time.monotonic_ns()}"))


def test_pagination_follows_next_page_across_three_pages(fake: FakeGenius) -> None:
    with _client(fake) as client:
        songs = list(client.artist_songs(700001, sort="title", per_page=4))
    assert len(songs) == 12
    assert len({s.song_id for s in songs}) == 12
    pages = [r.path for r in fake.log if "/songs?" in r.path]
    assert len(pages) == 3 and "page=3" in pages[-1]
    assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in fake.log)


def test_resolve_artist_and_song_details(fake: FakeGenius) -> None:
    with _client(fake) as client:
        artist = client.resolve_artist("kilo vance")
        song = client.song(70000103)
    assert artist.artist_id == 700001 and artist.name == "Kilo Vance"
    assert song.title == "Round Three" and song.featured_artists == ("Sister Solace",)
    assert song.album == "Ledger of Bars" and song.release_date is not None


def test_429_retry_after_is_honoured(fake: FakeGenius) -> None:
    fake.fail_next(Fault("status", 429, {"Retry-After": "1"}, path_prefix="/api/songs"))
    with _client(fake) as client:
        started = time.monotonic()
        client.song(70000101)
        waited = time.monotonic() - started
        assert client.stats.retries == 1
    assert waited >= 1.0
    first, second = [r.at for r in fake.log if r.path.startswith("/api/songs")]
    assert second - first >= 1.0


def test_two_500s_then_success(fake: FakeGenius) -> None:
    fake.fail_next(
        Fault("status", 500, path_prefix="/api/songs"),
        Fault("status", 503, path_prefix="/api/songs"),
    )
    with _client(fake) as client:
        assert client.song(70000101).song_id == 70000101
        assert client.stats.retries == 2
        assert client.stats.statuses["500"] == 1 and client.stats.statuses["503"] == 1


def test_timeout_is_retried(fake: FakeGenius) -> None:
    fake.fail_next(Fault("delay", seconds=1.5, path_prefix="/api/songs"))
    with _client(fake) as client:
        assert client.song(70000101).song_id == 70000101
        assert client.stats.statuses["ReadTimeout"] == 1


def test_dropped_connection_is_retried(fake: FakeGenius) -> None:
    fake.fail_next(Fault("drop", path_prefix="/api/songs"))
    with _client(fake) as client:
        assert client.song(70000101).song_id == 70000101
        assert client.stats.retries == 1


def test_malformed_body_is_a_clear_error(fake: FakeGenius) -> None:
    fake.fail_next(Fault("malformed", path_prefix="/api/songs"))
    with (
        _client(fake) as client,
        pytest.raises(UpstreamError, match=r"^Genius: malformed JSON response for /songs/70000101"),
    ):
        client.song(70000101)


def test_circuit_opens_after_consecutive_failures(fake: FakeGenius) -> None:
    fake.fail_next(*[Fault("status", 502) for _ in range(10)])
    with _client(
        fake, circuit_failure_threshold=3, max_attempts=2, circuit_reset_seconds=30
    ) as client:
        with pytest.raises(UpstreamError, match=r"gave up after 2 attempts: HTTP 502"):
            client.song(70000101)
        with pytest.raises(CircuitOpenError, match=r"^Genius: circuit open"):
            client.song(70000101)
    assert len(fake.log) == 3  # the open circuit sent nothing


def test_error_pages_are_returned_not_parsed_as_lyrics(fake: FakeGenius) -> None:
    with _client(fake) as client:
        status, _ = client.song_page("/No-such-song-lyrics")
    assert status == 404


def test_token_never_appears_in_errors_or_logs(
    fake: FakeGenius, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next(*[Fault("status", 500) for _ in range(3)])
    with (
        caplog.at_level(logging.DEBUG),
        _client(fake, max_attempts=3) as client,
        pytest.raises(UpstreamError) as error,
    ):
        client.song(70000101)
    assert TOKEN not in str(error.value) and TOKEN not in repr(error.value)
    assert TOKEN not in caplog.text


def test_retry_after_parses_seconds_and_dates() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(
        10.0
    )
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_rate_limit_spaces_requests(fake: FakeGenius) -> None:
    with _client(fake, requests_per_second=5.0) as client:
        started = time.monotonic()
        for _ in range(11):
            client.song(70000101)
        elapsed = time.monotonic() - started
    assert elapsed >= 2.0 - 0.05  # 11 requests at 5/s with no burst: 10 gaps of 0.2 s
    stamps = [r.at for r in fake.log]
    for i, start in enumerate(stamps):
        in_window = sum(1 for t in stamps[i:] if t - start < 1.0)
        assert in_window <= 5 + 1, f"{in_window} requests within one second"


def test_resolve_artist_by_url_slug(fake: FakeGenius) -> None:
    with _client(fake) as client:
        assert client.resolve_artist_slug("Kilo-vance").artist_id == 700001
        assert (
            client.resolve_artist_slug("https://genius.com/artists/Quiet-harbor").name
            == "Quiet Harbor"
        )
        with pytest.raises(UpstreamError, match="no artist with URL slug 'Kilo'"):
            client.resolve_artist_slug("Kilo")


@pytest.mark.parametrize(
    ("title", "state", "reason"),
    [
        ("Syllable Season (Tracklist)", "complete", "non-song: tracklist"),
        ("Roots & Routers (Liner Notes)", "complete", "non-song: liner notes"),
        ("Glowstick Gospel (Skit)", "complete", "non-song: skit"),
        ("Album Credits", "complete", "non-song: album credits"),
        ("The Interview (Interview)", "complete", "non-song: interview"),
        ("Unreleased Demo", "unreleased", "lyrics_state=unreleased"),
        ("Paper Cuts (Acapella)", "complete", None),
        ("Porch Light Stories (Instrumental)", "complete", None),
        ("Credit Where It's Due", "complete", None),
    ],
)
def test_skip_reasons(title: str, state: str, reason: str | None) -> None:
    from rap_assets.genius import skip_reason

    assert skip_reason(title, state) == reason
