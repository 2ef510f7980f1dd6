"""Lyric analyses: the validated output schema shared by every analyzer, and the rule-based
analyzer that is the embedded default (and the LLM path's fallback)."""

from __future__ import annotations

import re
from collections import Counter
from enum import StrEnum
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import BaseModel, Field, field_validator

from rap_assets.features import LyricFeatures, words
from rap_assets.lyrics import Section

if TYPE_CHECKING:
    from rap_assets.cache import Cache
    from rap_assets.llm import LLMAnalyzerRuntime

RULE_BASED_MODEL = "rule-based"
RULE_BASED_VERSION = "rules-v1"


class Mood(StrEnum):
    aggressive = "aggressive"
    confident = "confident"
    celebratory = "celebratory"
    reflective = "reflective"
    melancholic = "melancholic"
    hopeful = "hopeful"
    defiant = "defiant"
    dark = "dark"
    nostalgic = "nostalgic"


class Explicitness(StrEnum):
    clean = "clean"
    mild = "mild"
    explicit = "explicit"


#: The controlled theme vocabulary, with the words that signal each theme to the rule-based
#: analyzer. An LLM analyzer is asked to choose from the same keys.
THEMES: dict[str, frozenset[str]] = {
    "battle": frozenset(
        [
            "battle",
            "cypher",
            "bars",
            "punchline",
            "punchlines",
            "rapper",
            "rappers",
            "judges",
            "belt",
            "round",
            "rebuttal",
            "diss",
            "verse",
            "verses",
            "rhyme",
            "rhymes",
            "mic",
            "crowd",
        ]
    ),
    "wordplay": frozenset(
        [
            "metaphor",
            "metaphors",
            "syllable",
            "syllables",
            "homophone",
            "grammar",
            "syntax",
            "clause",
            "couplet",
            "couplets",
            "pen",
            "ink",
            "quill",
            "wordsmith",
            "vocabulary",
        ]
    ),
    "money": frozenset(
        [
            "money",
            "cash",
            "bands",
            "racks",
            "bag",
            "stacks",
            "rich",
            "paid",
            "wage",
            "wages",
            "rent",
            "dollar",
            "dollars",
            "bank",
            "profit",
            "debt",
            "hundred",
        ]
    ),
    "luxury": frozenset(
        [
            "diamonds",
            "ice",
            "rollie",
            "chain",
            "lambo",
            "benz",
            "bentley",
            "birkin",
            "designer",
            "drip",
            "foreign",
            "penthouse",
            "jet",
            "gold",
            "platinum",
            "cuban",
        ]
    ),
    "street": frozenset(
        [
            "trap",
            "trapping",
            "bando",
            "block",
            "corner",
            "plug",
            "opps",
            "glock",
            "hood",
            "hustle",
            "kitchen",
            "burner",
        ]
    ),
    "politics": frozenset(
        [
            "vote",
            "ballot",
            "democracy",
            "council",
            "power",
            "system",
            "union",
            "gerrymander",
            "organize",
            "march",
            "protest",
            "mayor",
            "policy",
        ]
    ),
    "injustice": frozenset(
        [
            "redlined",
            "racism",
            "injustice",
            "poison",
            "lead",
            "surveillance",
            "arrest",
            "prison",
            "jail",
            "detective",
            "confessed",
            "planted",
        ]
    ),
    "education": frozenset(
        [
            "library",
            "books",
            "read",
            "reading",
            "teach",
            "teacher",
            "classroom",
            "school",
            "knowledge",
            "learn",
            "learned",
            "diploma",
        ]
    ),
    "history": frozenset(
        [
            "ancestors",
            "history",
            "heritage",
            "grandmama",
            "grandfather",
            "grandpa",
            "records",
            "passage",
            "railroad",
            "past",
        ]
    ),
    "party": frozenset(
        [
            "party",
            "dance",
            "dancing",
            "club",
            "weekend",
            "friday",
            "confetti",
            "dj",
            "bass",
            "birthday",
            "karaoke",
            "celebrate",
            "champagne",
        ]
    ),
    "summer": frozenset(
        [
            "summer",
            "pool",
            "sunshine",
            "beach",
            "sunscreen",
            "boardwalk",
            "carnival",
            "coast",
            "road",
            "sunset",
        ]
    ),
    "storytelling": frozenset(
        [
            "stranger",
            "diner",
            "motel",
            "juror",
            "jury",
            "trial",
            "letter",
            "captain",
            "keeper",
            "years",
            "later",
            "named",
        ]
    ),
    "crime": frozenset(
        [
            "con",
            "forged",
            "package",
            "siren",
            "roadblock",
            "cell",
            "prosecutor",
            "guilty",
            "case",
            "shot",
        ]
    ),
    "family": frozenset(
        [
            "mama",
            "mother",
            "father",
            "grandma",
            "grandpa",
            "brother",
            "sister",
            "cousin",
            "uncle",
            "aunt",
            "son",
            "daughter",
            "family",
            "reunion",
        ]
    ),
    "mental health": frozenset(
        [
            "anxiety",
            "depression",
            "therapy",
            "therapist",
            "medication",
            "healing",
            "recovery",
            "panic",
            "lonely",
            "loneliness",
            "sadness",
            "overthinking",
            "burnout",
        ]
    ),
    "grief": frozenset(["grief", "dead", "passed", "funeral", "wake", "gone", "died", "tears"]),
    "self-doubt": frozenset(
        ["enough", "imposter", "regrets", "failures", "mirror", "scared", "recognize", "sorry"]
    ),
    "resilience": frozenset(
        [
            "survive",
            "survived",
            "breathe",
            "climb",
            "healing",
            "better",
            "stand",
            "rise",
            "forgive",
            "made",
        ]
    ),
    "love": frozenset(["love", "loving", "heart", "kiss", "baby", "lover"]),
    "work": frozenset(
        [
            "job",
            "jobs",
            "shift",
            "shifts",
            "boss",
            "work",
            "working",
            "worker",
            "workers",
            "overtime",
            "emails",
        ]
    ),
}

_POSITIVE = frozenset(
    [
        "love",
        "free",
        "freedom",
        "happy",
        "alive",
        "celebrate",
        "dream",
        "dreams",
        "peace",
        "hope",
        "home",
        "better",
        "bright",
        "light",
        "shining",
        "proud",
        "win",
        "winning",
        "fun",
        "friends",
        "family",
        "great",
        "fly",
        "truth",
        "strong",
        "safe",
        "alright",
        "healing",
        "forgive",
    ]
)
_NEGATIVE = frozenset(
    [
        "pain",
        "hell",
        "dead",
        "death",
        "grave",
        "poison",
        "lost",
        "lose",
        "lonely",
        "sad",
        "sadness",
        "scared",
        "regret",
        "regrets",
        "cry",
        "cried",
        "tears",
        "hate",
        "broke",
        "struggle",
        "debt",
        "anxiety",
        "depression",
        "burnout",
        "cold",
        "dark",
        "fear",
        "paranoid",
        "guilty",
        "drowning",
        "failures",
        "war",
        "jail",
        "prison",
        "starved",
    ]
)


class Analysis(BaseModel):
    """One analysis of one song's lyrics; every analyzer's output is validated against this."""

    mood: Mood
    sentiment: float = Field(ge=-1, le=1)
    themes: list[str] = Field(max_length=5)
    tags: list[str] = Field(default_factory=list, max_length=10)
    rhyme: int = Field(ge=1, le=10)
    wordplay: int = Field(ge=1, le=10)
    flow: int = Field(ge=1, le=10)
    storytelling: int = Field(ge=1, le=10)
    complexity: int = Field(ge=1, le=10)
    quality: float = Field(ge=1, le=10)
    explicitness: Explicitness
    language: str = Field(min_length=2, max_length=8)
    summary: str = Field(min_length=1, max_length=300)

    @field_validator("themes")
    @classmethod
    def _known_themes(cls, themes: list[str]) -> list[str]:
        unknown = [t for t in themes if t not in THEMES]
        if unknown:
            raise ValueError(f"themes outside the controlled vocabulary: {unknown}")
        return themes

    @field_validator("summary")
    @classmethod
    def _one_sentence(cls, summary: str) -> str:
        if len(re.findall(r"[.!?](?:\s|$)", summary.strip())) > 1:
            raise ValueError("summary must be one sentence")
        return summary


def _scale(value: float, low: float, high: float) -> int:
    """Map ``value`` from [low, high] onto the 1..10 scale, clamped."""
    if high <= low:
        return 1
    return max(1, min(10, round(1 + 9 * (value - low) / (high - low))))


def theme_scores(tokens: list[str]) -> Counter[str]:
    scores: Counter[str] = Counter()
    for token in tokens:
        for theme, vocabulary in THEMES.items():
            if token in vocabulary:
                scores[theme] += 1
    return scores


def analyze_rule_based(title: str, sections: list[Section], features: LyricFeatures) -> Analysis:
    """A transparent, deterministic analysis from lexicons and the lyric features.

    Its sub-scores are monotone in the features they name (rhyme in rhyme density, wordplay in
    lexical richness and long words, ...), which makes it a fair baseline to beat.
    """
    tokens = [w for section in sections for line in section.lines for w in words(line)]
    positive = sum(1 for t in tokens if t in _POSITIVE)
    negative = sum(1 for t in tokens if t in _NEGATIVE)
    sentiment = round(max(-1.0, min(1.0, (positive - negative) / max(4, positive + negative))), 3)
    scores = theme_scores(tokens)
    themes = [theme for theme, _ in scores.most_common(5)]
    if not themes:
        themes = ["storytelling"] if features.line_count > 20 else ["resilience"]

    rhyme = _scale(features.rhyme_density, 0.1, 0.8)
    wordplay = _scale(
        features.unique_word_ratio * 0.7 + features.multisyllabic_ratio * 3, 0.4, 0.85
    )
    flow = _scale(features.avg_syllables_per_line, 7, 15)
    storytelling = _scale(
        scores["storytelling"]
        + scores["family"]
        + scores["crime"]
        + (1 - features.repetition_ratio) * 4,
        1,
        8,
    )
    complexity = _scale(
        features.unique_word_ratio
        + features.multisyllabic_ratio * 2
        - features.repetition_ratio * 0.5,
        0.45,
        0.9,
    )
    quality = round((rhyme + wordplay + flow + storytelling + complexity) / 5, 2)

    if scores["battle"] + scores["wordplay"] >= 4 and sentiment <= 0.3:
        mood = Mood.aggressive
    elif scores["party"] + scores["summer"] >= 3 and sentiment >= 0:
        mood = Mood.celebratory
    elif scores["mental health"] + scores["grief"] + scores["self-doubt"] >= 3:
        mood = Mood.melancholic if sentiment < 0.2 else Mood.hopeful
    elif scores["politics"] + scores["injustice"] >= 3:
        mood = Mood.defiant
    elif scores["luxury"] + scores["money"] >= 4:
        mood = Mood.confident
    elif scores["storytelling"] + scores["history"] + scores["family"] >= 3:
        mood = Mood.nostalgic if sentiment >= 0 else Mood.reflective
    elif sentiment < -0.3:
        mood = Mood.dark
    else:
        mood = Mood.reflective

    explicit = features.profanity_ratio
    explicitness = (
        Explicitness.explicit
        if explicit >= 0.01
        else Explicitness.mild
        if explicit > 0
        else Explicitness.clean
    )
    theme_text = " and ".join(themes[:2])
    summary = f"A {mood.value} track about {theme_text}, with {rhyme}/10 rhyme and {complexity}/10 complexity."
    return Analysis(
        mood=mood,
        sentiment=sentiment,
        themes=themes,
        tags=sorted({p.lower() for s in sections for p in s.performers})[:10],
        rhyme=rhyme,
        wordplay=wordplay,
        flow=flow,
        storytelling=storytelling,
        complexity=complexity,
        quality=quality,
        explicitness=explicitness,
        language="en",
        summary=summary,
    )


class LyricAnalyzer(dg.ConfigurableResource):
    """Analyses lyrics into the validated ``Analysis`` schema.

    With ``llm_api_key`` (LLM_API_KEY) it asks an OpenAI-compatible LLM (Qwen3 on Novita AI by
    default); without one it is the rule-based analyzer, the embedded default. Every stored row
    carries ``model`` and ``prompt_version``, so analyses from different analyzers live side by
    side, and a row that fell back to the rules says so in ``analyzer``.
    """

    llm_api_key: str | None = Field(
        default=None, description="LLM_API_KEY; unset: rule-based analyzer."
    )
    llm_base_url: str = Field(default="https://api.novita.ai/openai/v1", description="LLM_BASE_URL")
    llm_model: str = Field(default="qwen/qwen3-4b-fp8", description="LLM_MODEL")
    max_tokens: int = Field(default=600, description="Upper bound on the reply length.")
    timeout_seconds: float = Field(default=60.0)
    concurrency: int = Field(default=8, description="Requests in flight at once.")
    requests_per_minute: float = Field(default=45.0, description="The provider's request limit.")
    tokens_per_minute: float = Field(
        default=60_000.0, description="Prompt + reply tokens per minute."
    )
    max_attempts: int = Field(default=4)
    backoff_base_seconds: float = Field(default=1.0)
    circuit_failure_threshold: int = Field(default=5)
    circuit_reset_seconds: float = Field(default=60.0)
    cache_ttl_seconds: float = Field(
        default=24 * 3600, description="Result cache TTL in front of the warehouse."
    )
    price_in_per_million: float = Field(
        default=0.03, description="USD per million prompt tokens (cost estimate)."
    )
    price_out_per_million: float = Field(
        default=0.03, description="USD per million completion tokens."
    )
    json_mode: bool = Field(default=True, description="Ask for response_format=json_object.")

    @property
    def uses_llm(self) -> bool:
        return bool(self.llm_api_key)

    @property
    def model(self) -> str:
        return self.llm_model if self.uses_llm else RULE_BASED_MODEL

    @property
    def prompt_version(self) -> str:
        from rap_assets.llm import PROMPT_VERSION

        return PROMPT_VERSION if self.uses_llm else RULE_BASED_VERSION

    @property
    def mode(self) -> str:
        return f"LLM {self.llm_model}" if self.uses_llm else "rule-based (no LLM_API_KEY)"

    def analyze(self, title: str, sections: list[Section], features: LyricFeatures) -> Analysis:
        """The rule-based analysis (the LLM path runs in batches: ``runtime``)."""
        return analyze_rule_based(title, sections, features)

    def runtime(self, cache: Cache) -> LLMAnalyzerRuntime:
        from rap_assets.llm import LLMAnalyzerRuntime, LLMSettings
        from rap_assets.resilience import RetryPolicy

        settings = LLMSettings(
            base_url=self.llm_base_url,
            api_key=self.llm_api_key or "",
            model=self.llm_model,
            max_tokens=self.max_tokens,
            timeout_seconds=self.timeout_seconds,
            concurrency=self.concurrency,
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            json_mode=self.json_mode,
            retry=RetryPolicy(self.max_attempts, self.backoff_base_seconds, 60.0),
            circuit_failure_threshold=self.circuit_failure_threshold,
            circuit_reset_seconds=self.circuit_reset_seconds,
            cache_ttl_seconds=self.cache_ttl_seconds,
        )
        return LLMAnalyzerRuntime(settings, cache)

    def cost_usd(self, tokens_in: int, tokens_out: int) -> float:
        return round(
            tokens_in / 1e6 * self.price_in_per_million
            + tokens_out / 1e6 * self.price_out_per_million,
            6,
        )
