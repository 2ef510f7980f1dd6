"""Pure matching of a Genius song to a Spotify track: normalisation, version markers, scoring."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

# Markers that make a recording a different version. A match must carry the same set: a remix
# is never the original, and the original is never its remix.
VERSION_MARKERS: dict[str, re.Pattern[str]] = {
    "remix": re.compile(r"\bremix(?:ed)?\b|\brmx\b"),
    "live": re.compile(r"\blive\b"),
    "acoustic": re.compile(r"\bacoustic\b|\bunplugged\b"),
    "instrumental": re.compile(r"\binstrumental\b"),
    "acapella": re.compile(r"\ba ?cappella\b|\bacapella\b"),
    "sped up": re.compile(r"\bsped[ -]?up\b|\bspeed up\b|\bnightcore\b"),
    "slowed": re.compile(r"\bslowed\b|\breverb\b|\bchopped\b"),
    "clean": re.compile(r"\bclean\b|\bradio edit\b|\bedited\b"),
    "demo": re.compile(r"\bdemo\b"),
}
_FEATURE = re.compile(
    r"[\(\[]\s*(?:feat\.?|ft\.?|featuring|with)\s[^\)\]]*[\)\]]|\s-\s(?:feat\.?|ft\.?)\s.*$",
    re.IGNORECASE,
)
_NOISE = re.compile(
    r"\b(?:remaster(?:ed)?(?: \d{4})?|\d{4} remaster(?:ed)?|original mix|mono|stereo)\b"
)


def fold(text: str) -> str:
    """Lower-case ASCII: diacritics stripped, "&" read as "and", punctuation dropped."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = text.replace("&", " and ").replace("$", "s")
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9 ]+", " ", text)).strip()


@dataclass(frozen=True)
class NormalizedTitle:
    core: str
    markers: frozenset[str]


def normalize_title(title: str) -> NormalizedTitle:
    without_features = _FEATURE.sub(" ", title)
    folded = fold(without_features)
    markers = frozenset(name for name, pattern in VERSION_MARKERS.items() if pattern.search(folded))
    core = folded
    for pattern in VERSION_MARKERS.values():
        core = pattern.sub(" ", core)
    core = _NOISE.sub(" ", core)
    core = re.sub(r"\b(?:version|mix|edit|remastered|session|session?s)\b", " ", core)
    return NormalizedTitle(re.sub(r"\s+", " ", core).strip(), markers)


@dataclass(frozen=True)
class SongToMatch:
    song_id: int
    title: str
    artist: str
    featured: tuple[str, ...] = ()
    year: int | None = None
    duration_ms: int | None = None


@dataclass(frozen=True)
class MatchResult:
    track: dict[str, Any] | None
    confidence: float
    margin: float
    reason: str | None = None

    @property
    def matched(self) -> bool:
        return self.track is not None


def score_candidate(song: SongToMatch, track: dict[str, Any]) -> float:
    """Confidence in [0, 1] that ``track`` is ``song``; 0 for a different version."""
    want = normalize_title(song.title)
    got = normalize_title(str(track.get("name", "")))
    if want.markers != got.markers:
        return 0.0
    title_score = SequenceMatcher(None, want.core, got.core).ratio()
    track_artists = {fold(a.get("name", "")) for a in track.get("artists", [])}
    primary = fold(song.artist)
    if primary not in track_artists:
        # a same-title song by someone else is the classic false positive
        return round(0.3 * title_score, 4)
    featured = {fold(f) for f in song.featured}
    feature_score = len(featured & track_artists) / len(featured) if featured else 1.0
    artist_score = 0.8 + 0.2 * feature_score
    extra = 1.0
    if (
        song.year
        and (release := str((track.get("album") or {}).get("release_date", ""))[:4]).isdigit()
    ):
        extra -= min(0.5, 0.1 * abs(int(release) - song.year))
    if song.duration_ms and track.get("duration_ms"):
        extra -= min(0.5, abs(int(track["duration_ms"]) - song.duration_ms) / 60_000)
    return round(0.6 * title_score + 0.3 * artist_score + 0.1 * max(0.0, extra), 4)


def best_match(
    song: SongToMatch, candidates: list[dict[str, Any]], threshold: float = 0.75
) -> MatchResult:
    """The best candidate with its confidence and margin over the runner-up, or "unmatched"."""
    if not candidates:
        return MatchResult(None, 0.0, 0.0, "no search results")
    scored = sorted(((score_candidate(song, t), t) for t in candidates), key=lambda pair: -pair[0])
    best_score, best = scored[0]
    runner_up = next((s for s, t in scored[1:] if t.get("id") != best.get("id")), 0.0)
    margin = round(best_score - runner_up, 4)
    if best_score < threshold:
        reason = (
            "only other versions found"
            if best_score == 0.0
            else f"best confidence {best_score:.2f} below {threshold:.2f}"
        )
        return MatchResult(None, best_score, margin, reason)
    return MatchResult(best, best_score, margin)
