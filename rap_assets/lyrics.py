"""Pure parsing of genius.com song pages into lyrics, sections and performers.

Nothing here does I/O, so every layout quirk is tested directly against saved pages.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from selectolax.lexbor import LexborHTMLParser, LexborNode

Status = Literal["lyrics", "instrumental", "missing"]

# Lyrics live in div[data-lyrics-container] since 2021; some pages carry only the styled
# Lyrics__Container class, and pages from before 2020 use div.lyrics.
_CONTAINERS = (
    'div[data-lyrics-container="true"], div[class^="Lyrics__Container"], '
    'div[class*=" Lyrics__Container"], div.lyrics'
)
# Chrome that Genius puts inside or between the containers: ads, the lyrics header with its
# contributor count and translations menu, the "You might also like" recommendations.
_CHROME = (
    "[data-exclude-from-selection], [class*='LyricsHeader'], [class*='RightSidebar'], "
    "[class*='InreadContainer'], [class*='RecommendedSong'], [class*='DfpAd'], "
    "[class*='LyricsFooter'], [class*='ContributorsCredit'], [class*='SongPageLyricsTranslation'], "
    "script, style, noscript, iframe, button, svg"
)
_NOISE_LINES = re.compile(
    r"^(?:you might also like|\d*\s*embed|\d+\s+contributors?|translations?"
    r"|see .{1,80} live|get tickets as low as \$\d+.*|share url|copy embed code)$",
    re.IGNORECASE,
)
# Older layouts glue the embed button onto the last lyric line: "...last line123Embed".
_TRAILING_EMBED = re.compile(r"(?<=\S)\d*\s?Embed$")
_HEADER = re.compile(r"^\[(?P<body>[^\[\]]+)\]$")
_PERFORMER_SPLIT = re.compile(r"\s*(?:,|&|\+|\band\b|\bx\b(?=\s+[A-Z0-9]))\s*", re.IGNORECASE)
_SPACE = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_ZERO_WIDTH = re.compile(r"[\u200b-\u200d\u2060\ufeff]")
_INSTRUMENTAL_MARKERS = (
    re.compile(r"This song is an instrumental", re.IGNORECASE),
    re.compile(r'<meta content="Instrumental" property="og:description"', re.IGNORECASE),
    re.compile(r'\\?"instrumental\\?":\s*true'),
)


class UnreadablePage(ValueError):
    """The input is not an HTML page that can be read at all."""


@dataclass(frozen=True)
class Section:
    header: str | None
    performers: list[str]
    lines: list[str]


@dataclass(frozen=True)
class ParsedLyrics:
    status: Status
    text: str
    sections: list[Section] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return self.text.split("\n") if self.text else []

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "text": self.text,
            "sections": [asdict(s) for s in self.sections],
        }


def decode_page(raw: bytes | str) -> str:
    """Decode page bytes: UTF-8 when valid, else the declared charset, else Windows-1252."""
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        declared = re.search(rb'charset=["\']?([A-Za-z0-9_\-]+)', raw[:4096])
        if declared:
            try:
                return raw.decode(declared.group(1).decode("ascii"))
            except (LookupError, UnicodeDecodeError):
                pass
        return raw.decode("cp1252", errors="replace")


def normalize_line(line: str) -> str:
    line = unicodedata.normalize("NFC", _ZERO_WIDTH.sub("", line))
    return _SPACE.sub(" ", line).strip()


def parse_header(line: str) -> tuple[str, list[str]] | None:
    """``[Verse 1: Killer Mike & El-P]`` -> ``("Verse 1", ["Killer Mike", "El-P"])``."""
    match = _HEADER.match(line)
    if not match:
        return None
    name, _, who = match["body"].partition(":")
    performers = [p.strip() for p in _PERFORMER_SPLIT.split(who) if p.strip()] if who else []
    return name.strip(), performers


def _container_text(node: LexborNode) -> str:
    # An ad block inside a container sits where a line break is on the page.
    for chrome in node.css(_CHROME):
        chrome.replace_with("\n")
    for br in node.css("br"):
        br.replace_with("\n")
    # Old layouts put stanzas in <p> blocks; a block boundary is a line boundary.
    for block in node.css("p"):
        block.insert_after("\n")
    return node.text(deep=True, separator="") or ""


def _top_level_containers(tree: LexborHTMLParser) -> list[LexborNode]:
    found: dict[int, LexborNode] = {}
    for node in tree.css(_CONTAINERS):  # a node matching two selectors comes back twice
        found.setdefault(node.mem_id, node)
    top: list[LexborNode] = []
    for node in found.values():
        parent = node.parent
        while parent is not None and parent.mem_id not in found:
            parent = parent.parent
        if parent is None:
            top.append(node)
    return top


def clean_lines(raw_lines: list[str]) -> list[str]:
    """Normalise, drop page chrome, and keep exactly one blank line between stanzas."""
    lines: list[str] = []
    for raw in raw_lines:
        line = normalize_line(raw)
        if line and _NOISE_LINES.match(line):
            continue
        line = _TRAILING_EMBED.sub("", line).rstrip() if line.endswith("Embed") else line
        if not line:
            if lines and lines[-1] != "":
                lines.append("")
            continue
        if parse_header(line) and lines and lines[-1] != "":
            # a header always opens a new stanza, even where the page had no blank line
            lines.append("")
        lines.append(line)
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def sections_from_lines(lines: list[str]) -> list[Section]:
    """Split at headers and at blank lines; a stanza without a header gets ``header=None``."""
    sections: list[Section] = []
    header: str | None = None
    performers: list[str] = []
    body: list[str] = []
    opened = False

    def close() -> None:
        if opened and (body or header):
            sections.append(Section(header, performers, body))

    for line in lines:
        parsed = parse_header(line)
        if parsed:
            close()
            (header, performers), body, opened = parsed, [], True
        elif line == "":
            close()
            header, performers, body, opened = None, [], [], False
        else:
            body.append(line)
            opened = True
    close()
    return sections


def lyrics_from_text(text: str) -> ParsedLyrics:
    """Lyrics written as plain text (headers in brackets, blank lines between stanzas)."""
    lines = clean_lines(text.split("\n"))
    if not lines:
        return ParsedLyrics("missing", "")
    return ParsedLyrics("lyrics", "\n".join(lines), sections_from_lines(lines))


def parse_lyrics_html(page: bytes | str) -> ParsedLyrics:
    """Extract lyrics from a genius.com song page of any layout since 2019.

    Pages without a lyrics container (404, bot walls, untranscribed songs) come out as
    ``missing``; pages marked as instrumentals as ``instrumental``; never as lyrics.
    """
    html = decode_page(page)
    if "<" not in html:
        raise UnreadablePage("input is not HTML: no tags found")
    tree = LexborHTMLParser(html)
    containers = _top_level_containers(tree)
    if not containers:
        if any(marker.search(html) for marker in _INSTRUMENTAL_MARKERS):
            return ParsedLyrics("instrumental", "")
        return ParsedLyrics("missing", "")
    # Consecutive containers continue one another: a stanza may run across the boundary, so a
    # container ending in <br> must not turn into a blank line.
    joined = "\n".join(_container_text(c).removesuffix("\n") for c in containers)
    lines = clean_lines(joined.split("\n"))
    if not lines:
        return ParsedLyrics("missing", "")
    if len(lines) == 1 and lines[0].strip("[]").lower() == "instrumental":
        return ParsedLyrics("instrumental", "")
    return ParsedLyrics("lyrics", "\n".join(lines), sections_from_lines(lines))


def expected_text_lines(parsed: ParsedLyrics) -> list[str]:
    """The lyric lines without section headers, the form of the saved ``.txt`` fixtures."""
    out: list[str] = []
    for line in parsed.lines:
        if parse_header(line):
            continue
        if line == "" and (not out or out[-1] == ""):
            continue
        out.append(line)
    while out and out[-1] == "":
        out.pop()
    return out
