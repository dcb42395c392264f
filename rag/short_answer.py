"""Short answers: the phrase of a cited quote that answers a who/when/where/how-many question, with exact offsets.

Candidates come from rules (capitalised name spans, numbers with their scale, dates and years); a small logistic
model, fitted by `python -m evals.fit short_answer`, scores each one on how it fits the question.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.bm25 import QUERY_STOPWORDS, tokenize
from rag.types import Chunk, Citation, ShortAnswer

Kind = str
"""What a question asks for: 'person', 'place', 'time', 'number' or 'entity' (a named thing)."""

PLACE_NOUNS = (
    "city|country|state|place|town|county|province|region|continent|island|river|lake|mountain|ocean|sea"
    "|capital|nation|location|village|district|territory|stadium|venue|university|college|school"
)
TIME_NOUNS = "year|years|date|day|month|time|century|decade|season|era|period|age"
# First match wins: "what year" is a time, not an entity; "how long" is a number.
QUESTION_KINDS: tuple[tuple[re.Pattern[str], Kind], ...] = (
    (re.compile(rf"\b(?:what|which|in what|in which)\s+(?:{TIME_NOUNS})\b|^\s*when\b|\bwhen (?:did|was|were|is|are|does|do|will|has|had|would|can)\b", re.I), "time"),
    (re.compile(r"\bhow (?:many|much|long|old|far|tall|high|big|large|deep|fast|wide|heavy)\b|\bwhat (?:number|percentage|percent|amount|population|proportion|share)\b", re.I), "number"),
    (re.compile(r"^\s*(?:who|whom|whose|who's)\b|\b(?:by|to|for|with|of|from) whom?\b|\bwho (?:is|was|were|are|sang|sings|played|plays|wrote|won|did|does|has|had)\b", re.I), "person"),
    (re.compile(rf"^\s*where\b|\bwhere (?:is|was|were|are|did|does|do)\b|\b(?:what|which|in what|in which)\s+(?:{PLACE_NOUNS})\b", re.I), "place"),
    (re.compile(r"^\s*which\b|\bwhat is the name of\b|\bwhat was the name of\b|^\s*name (?:the|a|an)\b|\bwhat (?:team|band|company|party|president|king|queen|country|film|movie|song|album|book|ship)\b", re.I), "entity"),
)

# Tokens: words, numbers with separators (150,782; 3.5), hyphenated and dotted forms (U.S); a possessive 's stays out.
TOKEN = re.compile(r"\w+(?:[-.,]\w+|['’](?![sS]\b)\w+)*%?")
CURRENCY = "$£€¥"
MONTHS = frozenset(
    "january february march april may june july august september october november december"
    " jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
WEEKDAYS = frozenset("monday tuesday wednesday thursday friday saturday sunday".split())
SCALES = frozenset("hundred thousand million billion trillion percent per cent dozen".split())
NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen"
    " eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred dozen".split()
)
# Lower-case words that may sit inside a name: "University of Michigan", "Leonardo da Vinci".
NAME_JOINERS = frozenset("of de da di del della van von der den du la le al bin ibn y and & the".split())
PLACE_PREPOSITIONS = frozenset("in at from near to into across outside inside".split())
TIME_PREPOSITIONS = frozenset("in on since until by during from before after".split())
MAX_NAME_TOKENS = 6


@dataclass(frozen=True)
class Phrase:
    """A candidate phrase: offsets local to its chunk, the rule that found it, and its tokens' positions."""

    start: int
    end: int
    rule: str  # "name", "number" or "time"
    first: int  # index of its first and last token in the sentence
    last: int


@dataclass(frozen=True)
class Weights:
    """Logistic weights over Phrase features; placeholder until the fit below."""

    bias: float = 0.0
    question_overlap: float = -3.0
    near_question: float = 1.0
    after_preposition: float = 0.5
    sentence_start: float = -0.5
    unit_match: float = 1.0
    length: float = -0.1
    sentence_coverage: float = 1.0
    position: float = 0.0


WEIGHTS = Weights()
FEATURES = tuple(name for name in Weights.__dataclass_fields__ if name != "bias")
# The rule whose phrases can answer each kind of question.
KIND_RULES: dict[Kind, frozenset[str]] = {
    "person": frozenset({"name"}),
    "place": frozenset({"name"}),
    "entity": frozenset({"name"}),
    "time": frozenset({"time"}),
    "number": frozenset({"number"}),
}


def asks_for_short_answer(question: str) -> Kind | None:
    """The kind of phrase a question asks for ('person', 'place', 'time', 'number', 'entity'), or None."""
    for pattern, kind in QUESTION_KINDS:
        if pattern.search(question):
            return kind
    return None


def _tokens(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of each token in text[start:end], a currency sign kept with its number."""
    out = []
    for m in TOKEN.finditer(text, start, end):
        s = m.start() - 1 if m.start() > start and text[m.start() - 1] in CURRENCY and m.group()[0].isdigit() else m.start()
        out.append((s, m.end()))
    return out


def _is_year(word: str) -> bool:
    return len(word) == 4 and word.isdigit() and 1000 <= int(word) <= 2100 or bool(re.fullmatch(r"\d{3,4}s", word))


def _is_number(word: str) -> bool:
    w = word.lstrip(CURRENCY).rstrip("%")
    return bool(re.fullmatch(r"\d[\d,.]*", w)) or word.lower() in NUMBER_WORDS


def candidate_phrases(text: str, start: int, end: int) -> list[Phrase]:
    """Every name, number and date phrase in the sentence text[start:end] (offsets into text)."""
    toks = _tokens(text, start, end)
    words = [text[s:e] for s, e in toks]
    lower = [w.lower() for w in words]
    out: list[Phrase] = []

    def joined(i: int, *, comma: bool = False) -> bool:
        """Whether token i+1 follows token i across nothing but space (or a comma, inside a date)."""
        if i + 1 >= len(toks):
            return False
        gap = text[toks[i][1] : toks[i + 1][0]].strip()
        return not gap or (comma and gap == ",")

    def add(i: int, j: int, rule: str) -> None:
        out.append(Phrase(toks[i][0], toks[j][1], rule, i, j))

    # Dates and years: "May 18, 2018", "June 2024", "18 May", "1901", "the 1960s", "Friday".
    i = 0
    while i < len(words):
        if lower[i] in MONTHS and (lower[i] != "may" or words[i][0] == "M"):
            j = i
            if j + 1 < len(words) and joined(j) and re.fullmatch(r"\d{1,2}", words[j + 1]):
                j += 1
            if j + 1 < len(words) and joined(j, comma=True) and _is_year(words[j + 1]):
                j += 1
            k = i - 1 if i > 0 and joined(i - 1) and re.fullmatch(r"\d{1,2}", words[i - 1]) else i
            if j > i or k < i or lower[i] not in {"may", "march"}:
                add(k, j, "time")
            if j > i and _is_year(words[j]):
                add(j, j, "time")
            i = j + 1
            continue
        if _is_year(words[i]) or lower[i] in WEEKDAYS:
            add(i, i, "time")
        elif (
            re.fullmatch(r"\d{1,2}(?:st|nd|rd|th)", lower[i])
            and i + 1 < len(words)
            and lower[i + 1] in {"century", "centuries"}
        ):
            add(i, i + 1, "time")
        i += 1

    # Numbers, with their scale and the noun they count: "$300 million", "270 officers", "35 percent".
    for i, w in enumerate(words):
        if not _is_number(w) or (i > 0 and joined(i - 1) and _is_number(words[i - 1])):
            continue
        j = i
        while j + 1 < len(words) and joined(j) and (lower[j + 1] in SCALES or _is_number(words[j + 1])):
            j += 1
        add(i, j, "number")
        if j + 1 < len(words) and joined(j) and lower[j + 1] not in QUERY_STOPWORDS and not words[j + 1][0].isupper():
            add(i, j + 1, "number")

    # Names: runs of capitalised words, joined by "of", "da", ...; a run is never longer than MAX_NAME_TOKENS.
    i = 0
    while i < len(words):
        if not words[i][0].isupper():
            i += 1
            continue
        j = i
        while j + 1 < len(words) and joined(j):
            if words[j + 1][0].isupper() or (words[j + 1][0].isdigit() and j + 1 - i < 2):
                j += 1
            elif lower[j + 1] in NAME_JOINERS and j + 2 < len(words) and joined(j + 1) and words[j + 2][0].isupper():
                j += 2
            else:
                break
        first = i + 1 if i == 0 and lower[i] in QUERY_STOPWORDS and j > i else i
        if lower[first] == "the" and first < j:
            first += 1
        if not (first == j and lower[first] in QUERY_STOPWORDS):
            add(first, min(j, first + MAX_NAME_TOKENS - 1), "name")
        i = j + 1
    return out


def _trim(phrase: Phrase, view: SentenceView, question_terms: set[str]) -> Phrase | None:
    """The phrase without leading or trailing words the question already says; None when nothing is left."""
    first, last, toks = phrase.first, phrase.last, view.toks

    def known(i: int) -> bool:
        stems = view.stems[i]
        word = view.words[i].lower()
        return not stems or all(s in question_terms for s in stems) or word in NAME_JOINERS or word in QUERY_STOPWORDS

    while first <= last and known(first):
        first += 1
    while last >= first and known(last):
        last -= 1
    if first > last:
        return None
    return Phrase(toks[first][0], toks[last][1], phrase.rule, first, last)


@dataclass(frozen=True)
class SentenceView:
    """One sentence's tokens, their words and stems, computed once for all its candidates."""

    toks: list[tuple[int, int]]
    words: list[str]
    stems: list[list[str]]
    coverage: float  # share of the question's content terms the sentence holds


def phrase_features(
    phrase: Phrase, kind: Kind, view: SentenceView, question_terms: set[str], unit_terms: set[str]
) -> dict[str, float]:
    """The features the model weighs for one candidate phrase of a sentence."""
    own = [s for i in range(phrase.first, phrase.last + 1) for s in view.stems[i]]
    overlap = sum(s in question_terms for s in own) / max(len(own), 1)
    near = [
        phrase.first - i if i < phrase.first else i - phrase.last
        for i, held in enumerate(view.stems)
        if not phrase.first <= i <= phrase.last and any(s in question_terms for s in held)
    ]
    before = view.words[phrase.first - 1].lower() if phrase.first > 0 else ""
    preps = TIME_PREPOSITIONS if kind in ("time", "number") else PLACE_PREPOSITIONS
    after = view.stems[phrase.last + 1 : phrase.last + 4]
    unit = any(s in unit_terms for held in after for s in held) or any(s in unit_terms for s in own)
    return {
        "question_overlap": overlap,
        "near_question": 1.0 / (1.0 + min(near)) if near else 0.0,
        "after_preposition": float(before in preps),
        "sentence_start": float(phrase.first == 0),
        "unit_match": float(unit),
        "length": float(phrase.last - phrase.first + 1),
        "sentence_coverage": view.coverage,
        "position": phrase.first / max(len(view.words), 1),
    }


def probability(features: dict[str, float], weights: Weights = WEIGHTS) -> float:
    """The model's probability that a phrase is the answer."""
    z = weights.bias + sum(getattr(weights, name) * features[name] for name in FEATURES)
    return 1.0 / (1.0 + math.exp(-z))


def unit_terms_of(question: str) -> set[str]:
    """The stems of the noun a number question counts ('how many officers' -> {'offic'})."""
    m = re.search(r"\bhow (?:many|much)\s+([a-z]+)", question, re.I)
    return set(tokenize(m.group(1), drop=QUERY_STOPWORDS)) if m else set()


@dataclass(frozen=True)
class Scored:
    """A candidate phrase of one sentence, with its features and the model's probability."""

    chunk: Chunk
    n: int
    phrase: Phrase
    features: dict[str, float]
    score: float


def score_candidates(question: str, kind: Kind, sentences: Sequence[tuple[int, Chunk, int, int]]) -> list[Scored]:
    """Every candidate phrase of the (n, chunk, local start, local end) sentences, scored, best first."""
    question_terms = set(tokenize(question, drop=QUERY_STOPWORDS))
    unit_terms = unit_terms_of(question)
    out = []
    for n, chunk, start, end in sentences:
        toks = _tokens(chunk.text, start, end)
        words = [chunk.text[a:b] for a, b in toks]
        stems = [tokenize(w) for w in words]
        held = {s for ws in stems for s in ws}
        view = SentenceView(toks, words, stems, len(question_terms & held) / max(len(question_terms), 1))
        for raw in candidate_phrases(chunk.text, start, end):
            if raw.rule not in KIND_RULES[kind]:
                continue
            phrase = _trim(raw, view, question_terms)
            if phrase is None:
                continue
            features = phrase_features(phrase, kind, view, question_terms, unit_terms)
            out.append(Scored(chunk, n, phrase, features, probability(features)))
    unique = {(s.chunk.source, s.chunk.start + s.phrase.start, s.chunk.start + s.phrase.end): s for s in out}
    return sorted(unique.values(), key=lambda s: -s.score)


def find_short_answer(
    question: str, citations: Sequence[Citation], chunks: dict[str, Chunk]
) -> tuple[ShortAnswer | None, float]:
    """The phrase of the cited quotes that best answers the question, and the model's probability for it.

    (None, 0.0) when the question asks for no short answer or no quote holds a candidate.
    """
    kind = asks_for_short_answer(question)
    if kind is None:
        return None, 0.0
    sentences = []
    for c in citations:
        chunk = chunks.get(c.chunk_id)
        if chunk is not None and chunk.text[c.start - chunk.start : c.end - chunk.start] == c.quote:
            sentences.append((c.n, chunk, c.start - chunk.start, c.end - chunk.start))
    ranked = score_candidates(question, kind, sentences)
    if not ranked:
        return None, 0.0
    best = ranked[0]
    chunk, phrase = best.chunk, best.phrase
    short = ShortAnswer(
        text=chunk.text[phrase.start : phrase.end],
        n=best.n,
        source=chunk.source,
        chunk_id=chunk.id,
        start=chunk.start + phrase.start,
        end=chunk.start + phrase.end,
    )
    return short, best.score
