"""Short answers: the phrase of a cited quote that answers a who/when/where/how-many question, with exact offsets.

Candidates come from rules (capitalised name spans, numbers with their scale, dates and years); a small logistic
model, fitted by `python -m evals.fit short_answer`, scores each one on how it fits the question.

Measured against spaCy's en_core_web_sm 3.8.0 entities on the same NQ-open dev check half (given the gold sentence):
its type-matched entities reach a best-possible F1 of 0.791 (these rules: 0.836), picking the entity nearest the
question's words scores 0.524 (this model: 0.629), and it costs a 12 MB model, seconds of loading and milliseconds
a sentence where this step takes about 0.3 ms a question. End to end on the NQ-open dev half (997 questions, every
passage indexed), `Assistant.ask` gave short-answer F1 0.294 / EM 0.244 before the issue-11 refit (the chosen
sentences held the gold answer for 0.528 of the questions). The answer step now also scores every retrieved
sentence's phrases (rag.answer.short_scores) to choose sentences and grade confidence; after that refit, replayed on
NQ-open dev (withhold 0.2), short-answer F1 is 0.429, and 0.425 on the test half (BENCHMARKS.md).
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
AUXILIARIES = "is|was|were|are|did|does|do|will|has|had|would|can"


def _any(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(alternatives), re.I)


# First match wins: "what year" is a time, not an entity; "how long" is a number.
QUESTION_KINDS: tuple[tuple[re.Pattern[str], Kind], ...] = (
    (
        _any(rf"\b(?:what|which|in what|in which)\s+(?:{TIME_NOUNS})\b", r"^\s*when\b", rf"\bwhen (?:{AUXILIARIES})\b"),
        "time",
    ),
    (
        _any(
            r"\bhow (?:many|much|long|old|far|tall|high|big|large|deep|fast|wide|heavy)\b",
            r"\bwhat (?:number|percentage|percent|amount|population|proportion|share)\b",
        ),
        "number",
    ),
    (
        _any(
            r"^\s*(?:who|whom|whose|who's)\b",
            r"\b(?:by|to|for|with|of|from) whom?\b",
            rf"\bwho (?:{AUXILIARIES}|sang|sings|played|plays|wrote|won)\b",
        ),
        "person",
    ),
    (
        _any(
            r"^\s*where\b", rf"\bwhere (?:{AUXILIARIES})\b", rf"\b(?:what|which|in what|in which)\s+(?:{PLACE_NOUNS})\b"
        ),
        "place",
    ),
    (
        _any(
            r"^\s*which\b",
            r"\bwhat (?:is|was) the name of\b",
            r"^\s*name (?:the|a|an)\b",
            r"\bwhat (?:team|band|company|party|president|king|queen|film|movie|song|album|book|ship)\b",
        ),
        "entity",
    ),
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
PLACE_PREPOSITIONS = frozenset("in at from near into across outside inside".split())
AGENT_PREPOSITIONS = frozenset("by to".split())
TIME_PREPOSITIONS = frozenset("in on since until by during from before after".split())
MAX_NAME_TOKENS = 6
DEMONYM = re.compile(r"[A-Z][a-z]+(?:an|ese|ish|ic|i)")  # "American", "English": says where from, not who
QUOTES = "\"'“‘"


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
    """Logistic weights over the phrase features (see phrase_features), one set per question kind."""

    bias: float
    question_overlap: float
    near_question: float
    after_preposition: float
    after_agent: float
    after_of: float
    sentence_start: float
    lone_opener: float
    unit_match: float
    length: float
    sentence_coverage: float
    coverage_gap: float
    position: float
    year: float
    full_date: float
    demonym: float
    quoted: float


FEATURES = tuple(name for name in Weights.__dataclass_fields__ if name != "bias")
# Fitted by `python -m evals.fit short_answer` (seed 0) on half the short-answer questions of SQuAD 2.0 dev (561)
# and of the NQ-open dev half (497), each given its gold sentence alone and with its neighbours. On the other
# halves, F1/EM of the chosen phrase: NQ-open dev 0.629/0.533 given the gold sentence, 0.530/0.439 with its
# neighbours too (a perfect choice among the candidates: 0.836 and 0.846); SQuAD 0.607/0.513 and 0.556/0.471.
WEIGHTS: dict[Kind, Weights] = {
    "person": Weights(
        bias=-1.297,
        question_overlap=-0.572,
        near_question=1.55,
        after_preposition=-1.192,
        after_agent=0.903,
        after_of=0.051,
        sentence_start=1.624,
        lone_opener=0.113,
        unit_match=0.0,
        length=0.304,
        sentence_coverage=-0.274,
        coverage_gap=2.167,
        position=-0.971,
        year=-1.283,
        full_date=-1.533,
        demonym=-1.073,
        quoted=-1.854,
    ),
    "place": Weights(
        bias=-1.954,
        question_overlap=1.291,
        near_question=2.163,
        after_preposition=1.535,
        after_agent=0.391,
        after_of=1.017,
        sentence_start=0.613,
        lone_opener=0.04,
        unit_match=0.0,
        length=0.075,
        sentence_coverage=-0.305,
        coverage_gap=1.927,
        position=0.008,
        year=-1.222,
        full_date=0.134,
        demonym=-0.234,
        quoted=-0.013,
    ),
    "entity": Weights(
        bias=-2.702,
        question_overlap=0.077,
        near_question=3.617,
        after_preposition=-1.318,
        after_agent=-0.826,
        after_of=0.768,
        sentence_start=0.778,
        lone_opener=0.446,
        unit_match=0.0,
        length=0.224,
        sentence_coverage=0.904,
        coverage_gap=1.81,
        position=-1.638,
        year=-0.277,
        full_date=-0.277,
        demonym=-0.26,
        quoted=0.723,
    ),
    "time": Weights(
        bias=-2.408,
        question_overlap=0.0,
        near_question=2.347,
        after_preposition=0.997,
        after_agent=1.171,
        after_of=0.842,
        sentence_start=0.0,
        lone_opener=0.0,
        unit_match=0.0,
        length=1.092,
        sentence_coverage=0.072,
        coverage_gap=2.148,
        position=-0.212,
        year=0.495,
        full_date=-0.788,
        demonym=0.0,
        quoted=0.0,
    ),
    "number": Weights(
        bias=-1.378,
        question_overlap=-0.638,
        near_question=2.177,
        after_preposition=0.207,
        after_agent=1.185,
        after_of=0.476,
        sentence_start=-0.056,
        lone_opener=0.933,
        unit_match=1.619,
        length=-0.623,
        sentence_coverage=0.563,
        coverage_gap=1.52,
        position=0.182,
        year=-1.538,
        full_date=0.0,
        demonym=0.0,
        quoted=0.349,
    ),
}
# The rule whose phrases can answer each kind of question.
KIND_RULES: dict[Kind, frozenset[str]] = {
    "person": frozenset({"name"}),
    "place": frozenset({"name"}),
    "entity": frozenset({"name"}),
    "time": frozenset({"time"}),
    "number": frozenset({"number"}),
}


TYPE_NOUN = re.compile(r"\b(?:which|what)\s+([a-z]+)", re.I)


def answer_type_terms(question: str) -> set[str]:
    """The noun naming what is asked for ('which city', 'what month'): the answer states it, not names it."""
    return {term for noun in TYPE_NOUN.findall(question) for term in tokenize(noun, drop=QUERY_STOPWORDS)}


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
        s = (
            m.start() - 1
            if m.start() > start and text[m.start() - 1] in CURRENCY and m.group()[0].isdigit()
            else m.start()
        )
        out.append((s, m.end()))
    return out


def _is_year(word: str) -> bool:
    return (len(word) == 4 and word.isdigit() and 1000 <= int(word) <= 2100) or bool(re.fullmatch(r"\d{3,4}s", word))


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
        dotted = gap == "." and "." in text[toks[i][0] : toks[i][1]]  # "U.S. President"
        return not gap or dotted or (comma and gap == ",")

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
        if lower[i] in MONTHS or lower[i] in WEEKDAYS:  # a date, found above
            i = j + 1
            continue
        first = i + 1 if i == 0 and lower[i] in QUERY_STOPWORDS and j > i else i
        if lower[first] == "the" and first < j:
            first += 1
        # A lone capitalised opener that is no name: "Meanwhile, ...", "Officially ...".
        is_opener = first == j == 0 and (lower[0].endswith("ly") or text[toks[0][1] : toks[0][1] + 1] == ",")
        if not (is_opener or (first == j and lower[first] in QUERY_STOPWORDS)):
            add(first, min(j, first + MAX_NAME_TOKENS - 1), "name")
        i = j + 1
    return out


def _trim(phrase: Phrase, view: SentenceView, question_terms: set[str], type_terms: set[str]) -> Phrase | None:
    """The phrase without leading or trailing words the question already says; None when nothing is left.

    A name may end in the noun the question asks for: "which airport" is answered by "Jomo Kenyatta Airport".
    """
    first, last, toks = phrase.first, phrase.last, view.toks

    def known(i: int) -> bool:
        stems = view.stems[i]
        if i == last and i > first and stems and set(stems) <= type_terms:
            return False
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

    text: str
    toks: list[tuple[int, int]]
    words: list[str]
    stems: list[list[str]]
    coverage: float  # share of the question's content terms the sentence holds
    best_coverage: float  # the most any cited sentence holds


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
    words = view.words[phrase.first : phrase.last + 1]
    opening = view.toks[phrase.first][0]
    return {
        "question_overlap": overlap,
        "near_question": 1.0 / (1.0 + min(near)) if near else 0.0,
        "after_preposition": float(before in preps),
        "after_agent": float(before in AGENT_PREPOSITIONS),  # "designed by X", "awarded to X"
        "after_of": float(before == "of"),  # ", of Germany": where someone is from
        "sentence_start": float(phrase.first == 0 and phrase.last > 0),
        "lone_opener": float(phrase.first == phrase.last == 0),  # "Work began ...": often no name at all
        "unit_match": float(unit),
        "length": float(phrase.last - phrase.first + 1),
        "sentence_coverage": view.coverage,
        "coverage_gap": view.coverage - view.best_coverage,  # 0 in the cited sentence most like the question
        "position": phrase.first / max(len(view.words), 1),
        "year": float(len(words) == 1 and _is_year(words[0])),
        "full_date": float(any(w.lower() in MONTHS for w in words)),
        "demonym": float(len(words) == 1 and bool(DEMONYM.fullmatch(words[0]))),
        "quoted": float(opening > 0 and view.text[opening - 1] in QUOTES),
    }


def probability(features: dict[str, float], weights: Weights) -> float:
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


def score_candidates(
    question: str,
    kind: Kind,
    sentences: Sequence[tuple[int, Chunk, int, int]],
    weights: dict[Kind, Weights] = WEIGHTS,
) -> list[Scored]:
    """Every candidate phrase of the (n, chunk, local start, local end) sentences, scored, best first."""
    question_terms = set(tokenize(question, drop=QUERY_STOPWORDS))
    unit_terms = unit_terms_of(question)
    type_terms = answer_type_terms(question)
    views = []
    for n, chunk, start, end in sentences:
        toks = _tokens(chunk.text, start, end)
        words = [chunk.text[a:b] for a, b in toks]
        stems = [tokenize(w) for w in words]
        held = {s for ws in stems for s in ws}
        views.append((n, chunk, start, end, chunk.text, toks, words, stems, len(question_terms & held)))
    most = max((v[-1] for v in views), default=0) / max(len(question_terms), 1)
    out = []
    for n, chunk, start, end, text, toks, words, stems, found in views:
        view = SentenceView(text, toks, words, stems, found / max(len(question_terms), 1), most)
        for raw in candidate_phrases(chunk.text, start, end):
            if raw.rule not in KIND_RULES[kind]:
                continue
            phrase = _trim(raw, view, question_terms, type_terms)
            if phrase is None:
                continue
            features = phrase_features(phrase, kind, view, question_terms, unit_terms)
            out.append(Scored(chunk, n, phrase, features, probability(features, weights[kind])))
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
