"""The page parser against real genius.com pages and crafted edge cases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rap_assets.lyrics import expected_text_lines, parse_header, parse_lyrics_html

from .conftest import FIXTURES

PAGES = FIXTURES / "genius-pages"


def _expected(txt: Path) -> list[str]:
    lines = txt.read_text(encoding="utf-8").replace("<br>", "").split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    return lines


@pytest.mark.parametrize("page", sorted(p.stem for p in PAGES.glob("*.txt")))
def test_real_pages_match_expected_text_exactly(page: str) -> None:
    parsed = parse_lyrics_html((PAGES / f"{page}.html").read_bytes())
    assert parsed.status == "lyrics"
    assert expected_text_lines(parsed) == _expected(PAGES / f"{page}.txt")


def test_2pac_page_has_131_lines_with_named_performers() -> None:
    parsed = parse_lyrics_html((PAGES / "2pac-all-eyez-on-me.html").read_bytes())
    assert len(parsed.lines) == 131
    assert parsed.lines[0] == "[Intro: 2Pac]"
    headers = [(s.header, s.performers) for s in parsed.sections]
    assert ("Verse 1", ["2Pac"]) in headers
    assert ("Verse 2", ["Big Syke"]) in headers
    for leak in ("Embed", "You might also like", "Contributors", "Translations"):
        assert not any(leak in line for line in parsed.lines), leak


def test_instrumental_page_is_instrumental() -> None:
    parsed = parse_lyrics_html((PAGES / "instrumental.html").read_bytes())
    assert parsed.status == "instrumental"
    assert parsed.text == ""


def _page(*containers: str) -> str:
    body = "".join(
        f'<div data-lyrics-container="true" class="Lyrics__Container-x">{c}</div>'
        for c in containers
    )
    return f"<html><body><div id='lyrics-root'>{body}</div></body></html>"


def test_inline_tags_keep_their_text_and_nested_tags_flatten() -> None:
    page = _page(
        "[Verse 1: A]<br/>I <i>keep</i> the <b>italic</b> and <a href='/x'><span>linked <b>bold</b></span></a> words<br/>"
        "<span><span>nested <em>deep</em></span></span> line"
    )
    parsed = parse_lyrics_html(page)
    assert parsed.lines == [
        "[Verse 1: A]",
        "I keep the italic and linked bold words",
        "nested deep line",
    ]


def test_header_with_several_performers() -> None:
    assert parse_header("[Verse 1: Killer Mike & El-P]") == ("Verse 1", ["Killer Mike", "El-P"])
    assert parse_header("[Chorus: A, B and C]") == ("Chorus", ["A", "B", "C"])
    assert parse_header("[Bridge]") == ("Bridge", [])
    assert parse_header("not a header") is None


def test_embed_and_recommendations_inside_the_container_are_dropped() -> None:
    page = _page(
        "[Chorus]<br/>First line<br/><div data-exclude-from-selection='true'>You might also like</div>"
        "Second line<br/>You might also like<br/>Last line12Embed"
    )
    parsed = parse_lyrics_html(page)
    assert parsed.status == "lyrics"
    assert "You might also like" not in parsed.text
    assert parsed.lines[-1] == "Last line"
    assert "Second line" in parsed.lines


def test_non_utf8_bytes_are_decoded() -> None:
    page = _page("Caf\xe9 con le\xf1a<br/>na\xefve").encode("cp1252")
    parsed = parse_lyrics_html(page)
    assert parsed.lines == ["Café con leña", "naïve"]


def test_unicode_is_nfc_and_whitespace_normalised() -> None:
    page = _page("Cafe\u0301\u00a0\u00a0  noir\u200b<br/>   spaced   out   ")
    assert parse_lyrics_html(page).lines == ["Café noir", "spaced out"]


def test_empty_container_and_error_pages_are_never_lyrics() -> None:
    assert parse_lyrics_html(_page("")).status == "missing"
    not_found = "<html><head><title>Oops! Page not found</title></head><body><h1>Page not found</h1></body></html>"
    assert parse_lyrics_html(not_found).status == "missing"
    bot_wall = (
        "<html><body><h1>Access denied</h1><p>Please verify you are a human</p></body></html>"
    )
    assert parse_lyrics_html(bot_wall).status == "missing"


def test_stanzas_across_containers_do_not_gain_blank_lines() -> None:
    parsed = parse_lyrics_html(_page("one<br/>two<br/>", "three<br/><br/>four"))
    assert parsed.lines == ["one", "two", "three", "", "four"]
    assert [s.lines for s in parsed.sections] == [["one", "two", "three"], ["four"]]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rap_assets.cli", "parse-lyrics", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_parse_lyrics_cli_exit_codes_and_json(tmp_path: Path) -> None:
    result = _cli(str(PAGES / "2pac-all-eyez-on-me.html"), "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["status"] == "lyrics"
    assert data["sections"][0] == {
        "header": "Intro",
        "performers": ["2Pac"],
        "lines": data["sections"][0]["lines"],
    }

    plain = _cli(str(PAGES / "2pac-all-eyez-on-me.html"))
    assert plain.stdout.splitlines()[:2] == [
        "[Intro: 2Pac]",
        "Big Syke, 'Nook, Hank, Bogart, Big Sur (yeah)",
    ]

    assert _cli(str(PAGES / "instrumental.html")).returncode == 3
    empty = tmp_path / "empty.html"
    empty.write_text(_page(""))
    assert _cli(str(empty)).returncode == 4
    binary = tmp_path / "binary.bin"
    binary.write_bytes(b"\x00\x01\x02 not html at all")
    assert _cli(str(binary)).returncode == 2
    assert _cli(str(tmp_path / "does-not-exist.html")).returncode == 2
