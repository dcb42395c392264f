"""News-aware answers: say when ("As of ..."), show where dated sources disagree, and answer timelines in date order.

Sources disagree when they give different counts, days or names for one slot.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from rag.bm25 import QUERY_STOPWORDS, tokenize
from rag.dates import DATELINE, DateScope, TimeWindow, iso, mentioned_day, named_times, parse_iso, spoken
from rag.markers import cite, format_markers
from rag.prompts import UNCERTAIN
from rag.short_answer import candidate_phrases
from rag.types import Answer, Candidate, Citation, Conflict, ConflictValue

# Words that make a question about a moment, even without a phrase that resolves to a window.
TIME_SENSITIVE = re.compile(
    r"\b(now|current(?:ly)?|still|so far|yet|as of|latest|recent(?:ly)?|today|this (?:week|month|year)|anymore)\b",
    re.IGNORECASE,
)
CHANGE_VERBS = r"develop(?:ed)?|evolve[ds]?|change[ds]?|unfold(?:ed)?|progress(?:ed)?"
HAPPENED = r"what (?:has |have )?happened (?:with|to|in|at|on)"
TIMELINE = re.compile(
    rf"\bhow (?:has|have|did)\b.*\b(?:{CHANGE_VERBS})\b"
    rf"|\b{HAPPENED}\b.*\bsince\b"
    r"|\btimeline\b|\bchronolog|\bdevelopments (?:in|on|of|around)\b|\bover time\b",
    re.IGNORECASE,
)
# A timeline question's framing: words that ask for a history, not what the documents should say.
TIMELINE_FRAMING = re.compile(
    rf"\b(?:how (?:has|have|did)|{CHANGE_VERBS}|{HAPPENED}|what (?:are|were) the|(?:an? |the )?"
    r"(?:timeline|chronology|developments?)(?: (?:of|in|on|around))?|over time|give me|show me)\b",
    re.IGNORECASE,
)
# A number as news writes it ("1,200", "3.5", "19"), and the words after it that say what it counts (a word: WORD).
NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\w])")
# A number followed by these is an increment ("270 more officers"), not a competing total.
INCREMENT = frozenset({"more", "additional", "extra", "another", "new", "further"})
# Words after a number that can tie it to another source's number: at most this many.
SLOT_WORDS = 4
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
# A day or name right after these says who reported or when ("told the BBC", "said on 12 March"), not the story.
REPORTING = frozenset("said says told tells according reported reports announced wrote added stated".split())
# Two sentences speak of the same thing when this share of their content words (numbers aside) is shared.
SAME_TOPIC = 0.25
# A timeline line repeats an earlier one when this share of its words is shared (and its numbers are the same).
NEAR_DUPLICATE = 0.6
TIMELINE_LINES = 8
# A timeline line's sentence must be this close to the question, relative to the best line's.
TIMELINE_RELEVANCE = 0.6
# The colon, not a comma: the quote that follows keeps its capital, exactly as the document has it.
AS_OF = "As of {day}: "


def is_time_sensitive(question: str, scope: DateScope | None) -> bool:
    """True when the question is about a moment: a relative-time window, or words such as 'now' or 'still'."""
    return bool(scope is not None and scope.window is not None) or bool(TIME_SENSITIVE.search(question))


def is_timeline_question(question: str) -> bool:
    """True for 'how has X developed', 'what happened with X since ...', 'timeline of X'."""
    return bool(TIMELINE.search(question))


def timeline_subject(question: str) -> str:
    """What a timeline question asks the history of ('the Haiti mission since June'); other questions as they are.

    Its framing ('how has ... developed', 'timeline of') names no fact to find, so retrieval and the answer's
    evidence look for the subject alone.
    """
    if not is_timeline_question(question):
        return question
    subject = " ".join(TIMELINE_FRAMING.sub(" ", question).split()).strip(" ?.!")
    return subject or question


def citation_date(citation: Citation) -> date | None:
    """The cited document's date."""
    return parse_iso(citation.date)


def dated_elsewhere(citations: Sequence[Citation], window: TimeWindow | None) -> frozenset[int]:
    """The citations whose sentence dates all it tells outside the question's time window.

    "400 officers sent in June" does not answer "how many arrived this week", however well its words match. An
    undated document's sentence, or one that names no time, is never set aside.
    """
    if window is None:
        return frozenset()
    elsewhere = set()
    for citation in citations:
        day = citation_date(citation)
        times = named_times(citation.quote, day) if day else []
        if times and not any(t.overlaps(window) for t in times):
            elsewhere.add(citation.n)
    return frozenset(elsewhere)


def content_words(text: str) -> set[str]:
    """Stemmed words of a sentence without numbers and question words, for comparing topics."""
    return {t for t in tokenize(text, drop=QUERY_STOPWORDS) if not t.isdigit()}


def overlap(a: set[str], b: set[str]) -> float:
    """Jaccard similarity of two word sets."""
    return len(a & b) / len(a | b) if a and b else 0.0


@dataclass(frozen=True)
class Fact:
    """A value one sentence gives for a slot: a count, a day or a name."""

    kind: str  # "count", "date" or "name": only facts of one kind compete
    key: frozenset[str]  # two facts agree when one key holds the other ("Berg" is "Anna Berg")
    slot: frozenset[str]  # stemmed words that tie the value to another source's
    label: str  # the slot in the source's words
    value: str  # the value as the source writes it (a count without its thousands commas)


def is_year(value: str) -> bool:
    """A bare four-digit number that reads as a year."""
    return len(value) == 4 and value.isdigit() and 1900 <= int(value) <= 2100


def slot_words(text: str) -> frozenset[str]:
    """Stemmed content words of a slot."""
    return frozenset(tokenize(text, drop=QUERY_STOPWORDS))


def numeric_facts(text: str, skip: Sequence[tuple[int, int]] = ()) -> list[Fact]:
    """Each count in a sentence with the words after it (years, increments and numbers inside `skip` left out)."""
    facts = []
    for m in NUMBER.finditer(text):
        value = m.group(1)
        after = WORD.findall(text[m.end() : m.end() + 60])[:SLOT_WORDS]
        if is_year(value) or not after or after[0].lower() in INCREMENT or any(s <= m.start() < e for s, e in skip):
            continue
        words = [w for w in after if w.lower() not in QUERY_STOPWORDS]
        count = value.replace(",", "")
        facts.append(Fact("count", frozenset({count}), slot_words(" ".join(words)), " ".join(words[:2]), count))
    return facts


def sentence_facts(text: str, year: int) -> list[Fact]:
    """The counts, days and names a sentence gives, found by the short-answer candidate rules.

    A day or name is tied to its slot by the words before it ("the vote will be held on 12 March", "the
    mission is led by Anna Berg"); a day without a year takes the report's. A dateline, or a day or name that
    follows a word of reporting, says who reported or when, not a fact of the story: it is left out.
    """
    dateline = DATELINE.match(text)
    story_from = dateline.end() if dateline else 0
    facts, days = [], []
    for phrase in candidate_phrases(text, 0, len(text)):
        written = text[phrase.start : phrase.end]
        day = mentioned_day(written, year) if phrase.rule == "time" else None
        if day is not None:
            days.append((phrase.start, phrase.end))
        if phrase.end <= story_from or (day is None and phrase.rule != "name"):
            continue
        before = WORD.findall(text[max(story_from, phrase.start - 60) : phrase.start])[-SLOT_WORDS:]
        slot = slot_words(" ".join(before))
        if not slot or any(w.lower() in REPORTING for w in before):
            continue
        if day is not None:
            key, label = frozenset({iso(day)}), f'the date after "{" ".join(before)}"'
        else:
            key, label = frozenset(written.lower().split()), f'the name after "{" ".join(before)}"'
        facts.append(Fact("date" if day else "name", key, slot, label, written))
    return numeric_facts(text, days) + facts


def agree(a: Fact, b: Fact) -> bool:
    """Two values that are the same: equal counts, the same day in any form, a name and a part of it."""
    return a.key <= b.key or b.key <= a.key


def find_conflicts(citations: Sequence[Citation]) -> list[Conflict]:
    """Counts, days or names that cited sentences of different dated documents give differently for one slot."""
    conflicts: list[Conflict] = []
    seen: set[tuple[int, int]] = set()
    for i, a in enumerate(citations):
        for b in citations[i + 1 :]:
            day_a, day_b = citation_date(a), citation_date(b)
            # Undated sources (encyclopedias, notes) state facts, not reports of a moment: only dated ones compete.
            if a.source == b.source or day_a is None or day_b is None or (a.n, b.n) in seen:
                continue
            if overlap(content_words(a.quote), content_words(b.quote)) < SAME_TOPIC:
                continue
            facts_b = sentence_facts(b.quote, day_b.year)
            for fact in sentence_facts(a.quote, day_a.year):
                rivals = [f for f in facts_b if f.kind == fact.kind and f.slot & fact.slot]
                match = next((f for f in rivals if not agree(fact, f)), None)
                if match is None or any(agree(fact, f) for f in rivals):
                    continue
                seen.add((a.n, b.n))
                conflicts.append(conflict_of(fact.label or match.label, [(fact.value, a), (match.value, b)]))
                break
    return conflicts


def disagreeing(
    citations: Sequence[Citation], candidates: Sequence[Candidate], is_cited: Callable[[Citation], bool]
) -> list[Citation]:
    """Citations of uncited documents whose sentence nearest the question disagrees with a cited count.

    Extraction cites the best sentences, which may all come from one report; a rival count in another retrieved
    report must be shown beside it, not dropped silently.
    """
    cited_sources = {c.source for c in citations}
    added: list[Citation] = []
    for candidate in candidates:
        if candidate.chunk.source in cited_sources or not candidate.sentence_scores:
            continue
        start, end, _ = max(candidate.sentence_scores, key=lambda s: s[2])
        rival = Citation.of_span(len(citations) + len(added) + 1, candidate.chunk, start, end)
        rivals = [v for c in find_conflicts([*citations, rival]) for v in c.values if v.n == rival.n]
        if rivals and is_cited(rival):
            added.append(rival)
            cited_sources.add(candidate.chunk.source)
    return added


def conflict_of(slot: str, values: list[tuple[str, Citation]]) -> Conflict:
    """A Conflict with the most recently dated value marked (none when the dates tie or are unknown)."""
    dates = [citation_date(c) for _, c in values]
    known = [d for d in dates if d is not None]
    newest = max(known) if known and dates.count(max(known)) == 1 else None
    return Conflict(
        slot=slot,
        values=tuple(
            ConflictValue(value=v, n=c.n, source=c.source, date=c.date, is_newest=newest is not None and d == newest)
            for (v, c), d in zip(values, dates, strict=True)
        ),
    )


def describe_conflict(conflict: Conflict) -> str:
    """One sentence: 'The sources disagree on injured: 12 [1] (17 January 2025); 19 [2] (18 January 2025, ...).'."""
    parts = []
    for value in conflict.values:
        day = parse_iso(value.date)
        when = spoken(day) if day else "undated"
        parts.append(f"{value.value} {format_markers([value.n])} ({when}{', the newer' if value.is_newest else ''})")
    return f"The sources disagree on {conflict.slot}: " + "; ".join(parts) + "."


def say_when(text: str, day: date) -> str:
    """The answer text opened with 'As of <day>, ' (after the line that says it is unsure, when there is one)."""
    head, sep, rest = text.partition("\n")
    if head == UNCERTAIN and sep:
        return f"{head}\n{AS_OF.format(day=spoken(day))}{rest}"
    return f"{AS_OF.format(day=spoken(day))}{text}"


def timeline(
    candidates: Sequence[Candidate], is_cited: Callable[[Citation], bool], *, lines: int = TIMELINE_LINES
) -> tuple[str, list[Citation]]:
    """One line per dated document, its sentence nearest the question, in date order, near-duplicates merged.

    The candidates carry sentence scores; `is_cited` verifies a citation against the stored text.
    """
    best: dict[str, tuple[float, date, Citation]] = {}
    for candidate in candidates:
        day = parse_iso(candidate.chunk.metadata.get("date"))
        if day is None or not candidate.sentence_scores:
            continue
        start, end, score = max(candidate.sentence_scores, key=lambda s: s[2])
        if candidate.chunk.source not in best or score > best[candidate.chunk.source][0]:
            best[candidate.chunk.source] = (score, day, Citation.of_span(1, candidate.chunk, start, end))
    top = max((score for score, _, _ in best.values()), default=0.0)
    chosen = [item for item in sorted(best.values(), key=lambda item: -item[0]) if item[0] >= TIMELINE_RELEVANCE * top]
    chosen = chosen[:lines]
    entries: list[tuple[date, Citation, list[Citation]]] = []
    for _, day, citation in sorted(chosen, key=lambda item: (item[1], -item[0])):
        if not is_cited(citation):
            continue
        words, numbers = content_words(citation.quote), set(NUMBER.findall(citation.quote))
        twin = next(
            (
                e
                for e in entries
                if overlap(words, content_words(e[1].quote)) >= NEAR_DUPLICATE
                and numbers == set(NUMBER.findall(e[1].quote))
            ),
            None,
        )
        if twin is not None:
            twin[2].append(citation)
        else:
            entries.append((day, citation, [citation]))
    citations: list[Citation] = []
    text_lines = []
    for day, _, group in entries:
        numbered = [c.model_copy(update={"n": len(citations) + i}) for i, c in enumerate(group, start=1)]
        citations.extend(numbered)
        markers = format_markers(c.n for c in numbered[1:])
        text_lines.append(f"- {spoken(day)}: {cite(numbered[0].quote, numbered[0].n)}{markers}")
    return "\n".join(text_lines), citations


def dated_answer(
    answer: Answer,
    question: str,
    scope: DateScope,
    *,
    timeline_from: Sequence[Candidate] | None = None,
    is_cited: Callable[[Citation], bool] = lambda c: True,
) -> Answer:
    """The answer with its as_of, a timeline for a timeline question, its conflicts, and 'As of ...' when it matters."""
    update: dict[str, object] = {
        "as_of": scope.as_of.isoformat(),
        "debug": {**answer.debug, **scope.describe()},
    }
    if answer.abstained or answer.mode == "corpus":
        return answer.model_copy(update=update)
    text, citations = answer.text, list(answer.citations)
    short = answer.short_answer
    is_timeline = False
    if timeline_from is not None:
        lines, dated = timeline(timeline_from, is_cited)
        if len(dated) >= 2:
            # The timeline renumbers the citations, and answers no single name or number: no short answer.
            text, citations, short, is_timeline = lines, dated, None, True
            update["debug"] = {**update["debug"], "timeline": True}  # type: ignore[dict-item]
    if short is not None:
        short = short.model_copy(update={"date": next((c.date for c in citations if c.n == short.n), None)})
    citations += disagreeing(citations, answer.candidates, is_cited)
    conflicts = find_conflicts(citations)
    days = {d for c in citations if (d := citation_date(c)) is not None}
    if days and not is_timeline and (is_time_sensitive(question, scope) or len(days) > 1):
        text = say_when(text, max(days))
    if conflicts:
        text += "\n\n" + "\n".join(describe_conflict(c) for c in conflicts)
    update |= {"text": text, "citations": tuple(citations), "conflicts": tuple(conflicts), "short_answer": short}
    return answer.model_copy(update=update)
