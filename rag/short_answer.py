"""Short answers: the phrase of a cited quote that answers a who/when/where/how-many question, with exact offsets.

Candidates come from rules (capitalised name spans, numbers with their scale, dates and years); a small logistic
model, fitted by `python -m evals.fit short_answer`, scores each one on how it fits the question.

Measured against spaCy's en_core_web_sm 3.8.0 entities on the NQ-open dev check half (given the gold sentence,
before the second refit): its type-matched entities reach a best-possible F1 of 0.791 (these rules then: 0.836),
picking the entity nearest the question's words scores 0.524 (this model then: 0.629), and it costs a 12 MB model,
seconds of loading and milliseconds a sentence. The answer step also scores every retrieved sentence's phrases
(rag.answer.short_scores) to choose sentences and grade confidence.

Replayed on the NQ-open dev half (withhold 0.2) from the answer's own chosen sentences (`python -m evals.fit
short_answer --nq-home HOME`), short-answer F1 as `rag eval` counts it is 0.453 (0.428 before the second refit,
same run), and 0.456 on a 300-question sample of the test half (0.425 before). Where the rest is lost: the chosen
sentences miss the gold answer for 24% of these questions (the answer step's part); where they hold it, the pick
scores 0.589 against 0.868 for a perfect pick among these candidates. A quarter of NQ's questions (316 of 1,328 dev)
ask for no kind this module knows ("what is the song in red dead redemption"): their answers are mostly common nouns
or titles, a candidate covers only 0.40 of them and the entity model picks 0.27 given the gold sentence, so they get
no short answer.
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
# Lower-case words that introduce a person's name: "the architect Ines Marlow", "singer Matt Monro".
PERSON_NOUNS = frozenset(
    """actor actress singer songwriter rapper musician composer writer author poet novelist playwright director
    producer president king queen prince princess emperor general captain admiral architect engineer painter
    artist sculptor scientist physicist chemist inventor philosopher player coach manager founder leader minister
    chancellor governor senator judge pope bishop saint explorer drummer guitarist vocalist presenter
    comedian dancer journalist economist mathematician astronomer botanist biologist athlete character""".split()
)
PERSON_NOUN_PATTERN = "|".join(sorted(PERSON_NOUNS))
QUANTITY_NOUNS = (
    "population|percentage|amount|rate|total|size|length|height|distance|age|cost|price|area|width|depth|speed"
    "|enrollment|capacity|temperature|weight|budget|salary|revenue"
)
AGENT_PARTICIPLES = (
    "written|sung|played|directed|invented|discovered|founded|won|composed|painted|designed|created|built"
    "|performed|voiced|portrayed|produced|led|owned|developed|coined|killed|assassinated"
)


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
            rf"\bwhat (?:{AUXILIARIES}) (?:the |an? )?(?:\w+ )?(?:{QUANTITY_NOUNS})\b",
            rf"^\s*(?:the )?(?:total )?(?:number|{QUANTITY_NOUNS}) of\b",
        ),
        "number",
    ),
    (
        _any(
            r"^\s*(?:who|whom|whose|who's)\b",
            r"\b(?:by|to|for|with|of|from) whom?\b",
            rf"\bwho (?:{AUXILIARIES}|sang|sings|played|plays|wrote|won)\b",
            rf"\b(?:what|which) (?:\w+ )?(?:{PERSON_NOUN_PATTERN})\b",
            rf"\b(?:{AGENT_PARTICIPLES}) by\s*$",  # NQ's statements: "the first nobel prize ... was won by"
            r"\b(?:went|awarded|given) to\s*$|\bnamed after\s*$",
            rf"^\s*(?:the )?(?:{PERSON_NOUN_PATTERN}) of\b",  # "author of the hymn great is thy faithfulness"
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
# Capitalised abbreviations whose dot does not end a sentence: "Dr. Martin Cooper".
TITLE_ABBREVIATIONS = frozenset("dr mr mrs ms st jr sr gen lt col capt sgt prof rev hon mt ft".split())
# Last words that make a capitalised run an organisation, a work or an event rather than a person.
THING_NOUNS = frozenset(
    """university college school academy institute records company corporation inc ltd group band party church
    stadium park river award awards prize cup league bowl series show festival war act court army navy force
    house hall tower bridge museum bank club team association council committee society union book books
    album song film movie magazine times news journal station airport hospital centre center street road avenue
    island islands mountain mountains lake sea ocean bay county city state states kingdom republic empire
    province district day games championship championships tournament conference""".split()
)
DEMONYM = re.compile(r"[A-Z][a-z]+(?:an|ese|ish|ic|i)")  # "American", "English": says where from, not who
QUOTES = "\"'“‘"
# Cue words: the question's verb or role, said just before a name ("sung by X", "directed by X").
CUE_FORMS = {
    form: base
    for base, forms in {
        "sing": "sang sung singer sings",
        "write": "wrote written writer",
        "win": "won winner",
        "lead": "led leader",
        "begin": "began",
        "star": "starred starring",
        "play": "plays played player",
    }.items()
    for form in forms.split()
}
CUE_PREFIX = 5
CUE_WINDOW = 3
LATEST = re.compile(r"\b(?:last|latest|most recent|recent|recently|next)\b", re.I)
EARLIEST = re.compile(r"\b(?:first|earliest|originally|original)\b", re.I)
WINDOW = 5  # tokens either side of a phrase in which window_terms counts the question's terms


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
    title_overlap: float
    thing_noun: float
    after_person_noun: float
    window_terms: float
    in_parentheses: float
    in_list: float
    holds_and: float
    inside_quotes: float
    cue_before: float
    extreme_year: float
    type_match: float
    near_off_title: float
    window_off_title: float


FEATURES = tuple(name for name in Weights.__dataclass_fields__ if name != "bias")
# Fitted by `python -m evals.fit short_answer` (seed 0) on half the short-answer questions of SQuAD 2.0 dev (579)
# and of the NQ-open dev half (505), each given its gold sentence alone and with its neighbours. On the other
# halves, F1/EM of the chosen phrase: NQ-open dev 0.640/0.552 given the gold sentence, 0.558/0.468 with its
# neighbours too (a perfect choice among the candidates: 0.837 and 0.844); SQuAD 0.614/0.512 and 0.588/0.488.
WEIGHTS: dict[Kind, Weights] = {
    "person": Weights(
        bias=-1.597,
        question_overlap=-2.038,
        near_question=0.013,
        after_preposition=-1.288,
        after_agent=0.924,
        after_of=-0.15,
        sentence_start=1.921,
        lone_opener=0.042,
        unit_match=0.0,
        length=0.275,
        sentence_coverage=-0.269,
        coverage_gap=1.429,
        position=-0.792,
        year=-0.867,
        full_date=-1.168,
        demonym=-0.943,
        quoted=-1.477,
        title_overlap=0.221,
        thing_noun=-0.532,
        after_person_noun=1.102,
        window_terms=-0.259,
        in_parentheses=0.21,
        in_list=-0.102,
        holds_and=-1.892,
        inside_quotes=0.882,
        cue_before=0.44,
        extreme_year=-0.497,
        type_match=-0.071,
        near_off_title=-0.057,
        window_off_title=1.633,
    ),
    "place": Weights(
        bias=-1.753,
        question_overlap=0.525,
        near_question=0.955,
        after_preposition=1.367,
        after_agent=0.117,
        after_of=0.869,
        sentence_start=0.44,
        lone_opener=-0.254,
        unit_match=0.0,
        length=0.058,
        sentence_coverage=-0.735,
        coverage_gap=1.995,
        position=-0.102,
        year=-0.5,
        full_date=-1.003,
        demonym=-0.053,
        quoted=-0.361,
        title_overlap=0.438,
        thing_noun=0.614,
        after_person_noun=-0.026,
        window_terms=0.923,
        in_parentheses=-1.573,
        in_list=-0.201,
        holds_and=-1.076,
        inside_quotes=-1.025,
        cue_before=0.236,
        extreme_year=0.0,
        type_match=1.918,
        near_off_title=-0.362,
        window_off_title=1.13,
    ),
    "entity": Weights(
        bias=-3.522,
        question_overlap=0.069,
        near_question=1.541,
        after_preposition=-0.928,
        after_agent=-0.702,
        after_of=0.762,
        sentence_start=0.424,
        lone_opener=0.371,
        unit_match=0.0,
        length=0.618,
        sentence_coverage=0.274,
        coverage_gap=0.726,
        position=-0.937,
        year=-0.084,
        full_date=-0.184,
        demonym=0.33,
        quoted=0.68,
        title_overlap=1.636,
        thing_noun=-1.026,
        after_person_noun=-1.297,
        window_terms=1.002,
        in_parentheses=0.551,
        in_list=-0.382,
        holds_and=-0.669,
        inside_quotes=0.08,
        cue_before=0.147,
        extreme_year=0.0,
        type_match=0.308,
        near_off_title=1.059,
        window_off_title=1.356,
    ),
    "time": Weights(
        bias=-2.663,
        question_overlap=0.388,
        near_question=-0.06,
        after_preposition=0.998,
        after_agent=0.122,
        after_of=0.361,
        sentence_start=0.0,
        lone_opener=0.0,
        unit_match=0.0,
        length=1.038,
        sentence_coverage=-0.212,
        coverage_gap=2.614,
        position=-0.308,
        year=1.13,
        full_date=-0.581,
        demonym=0.0,
        quoted=0.0,
        title_overlap=-0.102,
        thing_noun=0.0,
        after_person_noun=-0.293,
        window_terms=1.36,
        in_parentheses=-0.58,
        in_list=-0.575,
        holds_and=0.0,
        inside_quotes=-0.193,
        cue_before=0.516,
        extreme_year=0.505,
        type_match=0.775,
        near_off_title=1.344,
        window_off_title=0.057,
    ),
    "number": Weights(
        bias=-2.092,
        question_overlap=0.141,
        near_question=0.69,
        after_preposition=-0.966,
        after_agent=1.065,
        after_of=0.641,
        sentence_start=0.668,
        lone_opener=0.886,
        unit_match=1.29,
        length=-0.156,
        sentence_coverage=-0.075,
        coverage_gap=1.281,
        position=0.84,
        year=-1.645,
        full_date=0.0,
        demonym=0.0,
        quoted=0.0,
        title_overlap=-0.778,
        thing_noun=0.454,
        after_person_noun=0.0,
        window_terms=1.947,
        in_parentheses=-1.267,
        in_list=-1.31,
        holds_and=0.0,
        inside_quotes=-0.266,
        cue_before=-0.133,
        extreme_year=-0.104,
        type_match=0.0,
        near_off_title=1.091,
        window_off_title=-0.141,
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
        word = text[toks[i][0] : toks[i][1]]
        dotted = gap == "." and ("." in word or word.lower() in TITLE_ABBREVIATIONS)  # "U.S. President", "Dr. X"
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
            last = min(j, first + MAX_NAME_TOKENS - 1)
            add(first, last, "name")
            # A list of names is also each name alone: "Lata Mangeshkar and Asha Bhosle".
            joins = [k for k in range(first + 1, last) if lower[k] in {"and", "&"}]
            for a, b in zip([first - 1, *joins], [*joins, last + 1], strict=True) if joins else ():
                if a + 1 < b:
                    add(a + 1, b - 1, "name")
        i = j + 1
    return out


@dataclass(frozen=True)
class Asked:
    """What the question says, computed once for all its candidates (sets of stems, or of cue keys)."""

    terms: set[str]  # its content words
    units: set[str]  # the noun a number question counts ("how many officers")
    types: set[str]  # the noun naming what is asked for ("which airport")
    cues: set[str]  # its words' cue keys (see cue)


def _trim(phrase: Phrase, view: SentenceView, asked: Asked) -> Phrase | None:
    """The phrase without leading or trailing words the question already says; None when nothing is left.

    A name may end in the noun the question asks for: "which airport" is answered by "Jomo Kenyatta Airport".
    """
    first, last, toks = phrase.first, phrase.last, view.toks

    def known(i: int) -> bool:
        stems = view.stems[i]
        if i == last and i > first and stems and set(stems) <= asked.types:
            return False
        word = view.words[i]
        # A capitalised stop word inside a phrase is part of it: "May 18, 2018", "Will Smith".
        stop = word.lower() in QUERY_STOPWORDS and not word[0].isupper()
        return not stems or all(s in asked.terms for s in stems) or word.lower() in NAME_JOINERS or stop

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
    title: frozenset[str]  # stems of the chunk's title: the subject the question names, rarely its answer
    coverage: float  # share of the question's content terms the sentence holds
    best_coverage: float  # the most any cited sentence holds
    hits: tuple[int, ...]  # the tokens holding a question term
    hits_off_title: tuple[int, ...]  # those holding one the title lacks


def cue(word: str) -> str:
    """A word's cue key: irregular forms mapped to their base, then its first CUE_PREFIX letters."""
    word = word.lower()
    return CUE_FORMS.get(word, word)[:CUE_PREFIX]


def cue_keys(question: str) -> set[str]:
    """The cue keys of the question's content words ('who sang ...' -> {'sing', ...})."""
    return {cue(w) for w in re.findall(r"[a-z]+", question.lower()) if w not in QUERY_STOPWORDS and len(w) > 2}


def year_of(view: SentenceView, phrase: Phrase) -> int | None:
    """The year a time phrase names ('May 18, 2018' -> 2018), None for none."""
    for word in reversed(view.words[phrase.first : phrase.last + 1]):
        if word.isdigit() and _is_year(word):  # a decade ("880s") names no one year
            return int(word)
    return None


def wanted_year(question: str, years: Sequence[int]) -> int | None:
    """The latest year for 'when was the last ...', the earliest for 'when was the first ...'; else None."""
    if not years:
        return None
    if LATEST.search(question):
        return max(years)
    return min(years) if EARLIEST.search(question) else None


def phrase_features(phrase: Phrase, kind: Kind, view: SentenceView, asked: Asked) -> dict[str, float]:
    """The features the model weighs for one candidate phrase of a sentence (all but extreme_year)."""
    own = [s for i in range(phrase.first, phrase.last + 1) for s in view.stems[i]]
    overlap = sum(s in asked.terms for s in own) / max(len(own), 1)
    near = [
        phrase.first - i if i < phrase.first else i - phrase.last
        for i in view.hits
        if not phrase.first <= i <= phrase.last
    ]
    off_title = [
        phrase.first - i if i < phrase.first else i - phrase.last
        for i in view.hits_off_title
        if not phrase.first <= i <= phrase.last
    ]
    before = view.words[phrase.first - 1].lower() if phrase.first > 0 else ""
    preps = TIME_PREPOSITIONS if kind in ("time", "number") else PLACE_PREPOSITIONS
    after = view.stems[phrase.last + 1 : phrase.last + 4]
    unit = any(s in asked.units for held in after for s in held) or any(s in asked.units for s in own)
    words = view.words[phrase.first : phrase.last + 1]
    opening = view.toks[phrase.first][0]
    window = {
        s
        for i in [
            *range(max(phrase.first - WINDOW, 0), phrase.first),
            *range(phrase.last + 1, phrase.last + 1 + WINDOW),
        ]
        if i < len(view.stems)
        for s in view.stems[i]
    }
    type_match = bool(view.stems[phrase.last]) and set(view.stems[phrase.last]) <= asked.types
    after_word = view.words[phrase.last + 1].lower() if phrase.last + 1 < len(view.words) else ""
    return {
        "question_overlap": overlap,
        "near_question": 1.0 / (1.0 + min(near)) if near else 0.0,
        "near_off_title": 1.0 / (1.0 + min(off_title)) if off_title else 0.0,
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
        "inside_quotes": float(sum(view.text[view.toks[0][0] : opening].count(q) for q in '"“”') % 2 == 1),
        "cue_before": float(
            any(cue(w) in asked.cues for w in view.words[max(phrase.first - CUE_WINDOW, 0) : phrase.first])
        ),
        "title_overlap": sum(s in view.title for s in own) / max(len(own), 1),
        "thing_noun": float(view.words[phrase.last].lower() in THING_NOUNS and not type_match),
        "type_match": float(type_match),  # "Jomo Kenyatta International Airport" for "which airport"
        "after_person_noun": float(before in PERSON_NOUNS),
        "window_terms": len(window & asked.terms) / max(len(asked.terms), 1),
        "window_off_title": len((window & asked.terms) - view.title) / max(len(asked.terms - view.title), 1),
        "in_parentheses": float(opening > 0 and view.text[opening - 1] == "("),
        "in_list": float(before in {"and", "&"} or after_word in {"and", "&"}),
        "holds_and": float(any(w.lower() in {"and", "&"} for w in words)),
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
    asked = Asked(question_terms, unit_terms_of(question), answer_type_terms(question), cue_keys(question))
    views = []
    for n, chunk, start, end in sentences:
        toks = _tokens(chunk.text, start, end)
        words = [chunk.text[a:b] for a, b in toks]
        stems = [tokenize(w) for w in words]
        held = {s for ws in stems for s in ws}
        views.append((n, chunk, start, end, chunk.text, toks, words, stems, len(question_terms & held)))
    most = max((v[-1] for v in views), default=0) / max(len(question_terms), 1)
    found_phrases = []
    for n, chunk, start, end, text, toks, words, stems, found in views:
        title = frozenset(tokenize(chunk.title.replace("_", " ")))
        hits = tuple(i for i, held in enumerate(stems) if any(s in question_terms for s in held))
        off_title = tuple(i for i in hits if any(s in question_terms and s not in title for s in stems[i]))
        view = SentenceView(text, toks, words, stems, title, found / max(len(question_terms), 1), most, hits, off_title)
        for raw in candidate_phrases(chunk.text, start, end):
            if raw.rule not in KIND_RULES[kind]:
                continue
            phrase = _trim(raw, view, asked)
            if phrase is not None:
                found_phrases.append((n, chunk, view, phrase))
    years = [y for *_, view, phrase in found_phrases if (y := year_of(view, phrase)) is not None]
    extreme = wanted_year(question, years)
    out = []
    for n, chunk, view, phrase in found_phrases:
        features = phrase_features(phrase, kind, view, asked)
        features["extreme_year"] = float(extreme is not None and year_of(view, phrase) == extreme)
        out.append(Scored(chunk, n, phrase, features, probability(features, weights[kind])))
    unique = {(s.chunk.source, s.chunk.start + s.phrase.start, s.chunk.start + s.phrase.end): s for s in out}
    return sorted(unique.values(), key=lambda s: -s.score)


def find_short_answer(
    question: str,
    citations: Sequence[Citation],
    chunks: dict[str, Chunk],
    *,
    likeliest: tuple[str, int] | None = None,
    elsewhere: frozenset[int] = frozenset(),
) -> tuple[ShortAnswer | None, float]:
    """The phrase of the cited quotes that best answers the question, and the model's probability for it.

    `likeliest` is (source, start) of the quote the answer step found likeliest to hold the answer: its best phrase
    wins when it has one (NQ-open dev short-answer F1 0.474 -> 0.485, SQuAD 2.0 dev 0.528 -> 0.596; BENCHMARKS.md).
    `elsewhere` are the citation numbers whose quotes tell of another time than the question asks about: their
    phrases are used only when no other quote has one. (None, 0.0) when the question asks for no short answer or
    no quote holds a candidate.
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
    ranked = [x for x in ranked if x.n not in elsewhere] or ranked
    if not ranked:
        return None, 0.0
    preferred = {c.n for c in citations if (c.source, c.start) == likeliest} - elsewhere
    best = next((x for x in ranked if x.n in preferred), ranked[0])
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
