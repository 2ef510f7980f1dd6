"""Rule-based lyric features: pure functions of the parsed sections, no I/O."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

from rap_assets.lyrics import Section

FEATURE_VERSION = "features-v1"

_WORD = re.compile(r"[a-z0-9']+")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")
# A short list: the feature measures how much explicit language a song leans on, not a filter.
PROFANITY = frozenset(
    [
        "fuck",
        "fucking",
        "fuckin",
        "motherfucker",
        "motherfuckin",
        "motherfuckers",
        "shit",
        "shitty",
        "bitch",
        "bitches",
        "damn",
        "goddamn",
        "hell",
        "ass",
        "asshole",
        "nigga",
        "niggas",
        "dick",
        "pussy",
        "hoe",
        "hoes",
    ]
)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'"))


def syllables(word: str) -> int:
    """A vowel-group estimate, good enough to compare lines and songs with one another."""
    word = word.strip("'")
    if not word:
        return 0
    count = len(_VOWEL_GROUPS.findall(word))
    if word.endswith("e") and not word.endswith(("le", "ee", "ye")) and count > 1:
        count -= 1
    return max(1, count)


def rhyme_key(word: str) -> str:
    """The last vowel group and what follows it: "cypher" -> "er", "pain" -> "ain"."""
    word = word.strip("'").rstrip("s") or word
    match = re.search(r"[aeiouy]+[^aeiouy]*$", word)
    return match.group(0) if match else word


@dataclass(frozen=True)
class LyricFeatures:
    line_count: int
    word_count: int
    unique_word_ratio: float
    avg_words_per_line: float
    avg_syllables_per_line: float
    rhyme_density: float
    multisyllabic_ratio: float
    repetition_ratio: float
    profanity_ratio: float
    section_count: int
    performer_count: int
    first_person_ratio: float
    second_person_ratio: float
    question_ratio: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


#: Every feature, in a fixed order (the evaluation's feature vector).
FEATURE_NAMES: list[str] = [f.name for f in fields(LyricFeatures)]
#: The features that also have a typed column in ``lyric_features`` (all are in its jsonb).
STORED_COLUMNS: frozenset[str] = frozenset(FEATURE_NAMES) - {
    "first_person_ratio",
    "second_person_ratio",
    "question_ratio",
}


def compute_features(sections: Sequence[Section]) -> LyricFeatures:
    lines = [line for section in sections for line in section.lines]
    tokens = [w for line in lines for w in words(line)]
    n_lines = max(1, len(lines))
    n_words = max(1, len(tokens))
    line_ends = [ws[-1] for ws in (words(line) for line in lines) if ws]
    # End rhymes: a line rhymes when it shares a rhyme key with one of the next two lines.
    rhymed = sum(
        1
        for i, end in enumerate(line_ends)
        if any(
            rhyme_key(end) == rhyme_key(other) and end != other
            for other in line_ends[i + 1 : i + 3]
        )
    )
    line_counts = Counter(line.lower() for line in lines)
    repeated = sum(count for count in line_counts.values() if count > 1)
    performers = {p for section in sections for p in section.performers}
    return LyricFeatures(
        line_count=len(lines),
        word_count=len(tokens),
        unique_word_ratio=round(len(set(tokens)) / n_words, 4),
        avg_words_per_line=round(len(tokens) / n_lines, 3),
        avg_syllables_per_line=round(sum(syllables(w) for w in tokens) / n_lines, 3),
        rhyme_density=round(rhymed / max(1, len(line_ends)), 4),
        multisyllabic_ratio=round(sum(1 for w in tokens if syllables(w) >= 3) / n_words, 4),
        repetition_ratio=round(repeated / n_lines, 4),
        profanity_ratio=round(sum(1 for w in tokens if w in PROFANITY) / n_words, 4),
        section_count=len(sections),
        performer_count=len(performers),
        first_person_ratio=round(
            sum(1 for w in tokens if w in {"i", "i'm", "me", "my", "mine", "myself"}) / n_words, 4
        ),
        second_person_ratio=round(
            sum(1 for w in tokens if w in {"you", "you're", "your", "yours", "yourself"}) / n_words,
            4,
        ),
        question_ratio=round(sum(1 for line in lines if line.rstrip().endswith("?")) / n_lines, 4),
    )
