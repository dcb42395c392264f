"""Extractive answers: pick the sentences that answer, cite their exact spans, or abstain."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.bm25 import QUERY_STOPWORDS, BM25Index, coverage, sentence_terms, term_weights, tokenize
from rag.markers import cite
from rag.prompts import ABSTAIN
from rag.text import sentence_spans
from rag.types import AnswerStatus, Candidate, Chunk, Citation, ShortAnswer

NUMBER_WORDS = frozenset(
    [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "dozen",
        "dozens",
        "hundred",
        "hundreds",
        "thousand",
        "thousands",
        "million",
        "millions",
        "billion",
        "billions",
        "half",
        "twice",
    ]
)
TIME_WORDS = frozenset(
    [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "today",
        "yesterday",
        "tomorrow",
        "week",
        "weeks",
        "month",
        "months",
        "year",
        "years",
        "night",
        "morning",
        "evening",
        "day",
        "days",
        "decade",
        "century",
    ]
)
QUESTION_TYPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bhow (many|much|long|old|far|large|big)\b|\bwhat (number|percentage|amount)\b", re.I), "number"),
    (re.compile(r"\bwhen\b|\bwhat (year|date|day|month|time)\b|\bwhich (year|day|month)\b", re.I), "time"),
    (re.compile(r"^\s*(who|whom|whose)\b", re.I), "name"),
)


@dataclass(frozen=True)
class Weights:
    """How evidence signals rank sentences and decide abstention.

    Sentence and confidence weights, with the threshold (Settings.abstain_threshold), were grid-searched on
    SQuAD 2.0 dev (800 questions, seed 1, none from the seed-0 benchmark sample) and the seed set, keeping every
    seed near-miss abstaining; see BENCHMARKS.md. `semantic` is a sentence's stored (late-chunked) vector's
    cosine to the question.
    """

    semantic: float = 0.45
    lexical: float = 0.55
    chunk_prior: float = 0.05
    extra_sentence_ratio: float = 0.75
    confidence_semantic: float = 0.45
    confidence_coverage: float = 0.4
    type_penalty: float = 0.2
    type_noun_weight: float = 0.3


@dataclass
class Sentence:
    """A candidate answer sentence inside a retrieved chunk."""

    chunk: Chunk
    local_start: int
    local_end: int
    chunk_rank: int
    terms: frozenset[str]
    lexical: float = 0.0
    semantic: float = 0.0
    score: float = 0.0

    @property
    def text(self) -> str:
        """The sentence as it appears in the chunk."""
        return self.chunk.text[self.local_start : self.local_end]

    @property
    def doc_span(self) -> tuple[str, int, int]:
        """(source, start, end) in the cleaned document: the same sentence seen in two chunks is one."""
        return self.chunk.source, self.chunk.start + self.local_start, self.chunk.start + self.local_end


@dataclass
class Extraction:
    """The outcome of extractive answering."""

    text: str
    citations: list[Citation]
    status: AnswerStatus
    confidence: float
    threshold: float
    signals: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    short_answer: ShortAnswer | None = None


TYPE_NOUN = re.compile(r"\b(?:which|what)\s+([a-z]+)", re.I)


def answer_type_terms(question: str) -> set[str]:
    """The noun naming what is asked for ('which city', 'what month'): the answer states it, not names it."""
    return {term for noun in TYPE_NOUN.findall(question) for term in tokenize(noun, drop=QUERY_STOPWORDS)}


def question_type(question: str) -> str | None:
    """'number', 'time' or 'name' when the question asks for one, else None."""
    for pattern, kind in QUESTION_TYPES:
        if pattern.search(question):
            return kind
    return None


def satisfies_type(text: str, kind: str | None) -> bool:
    """Whether a sentence holds the kind of thing the question asks for."""
    if kind is None:
        return True
    words = re.findall(r"[A-Za-z]+", text.lower())
    if kind == "number":
        return bool(re.search(r"\d", text)) or any(w in NUMBER_WORDS for w in words)
    if kind == "time":
        return bool(re.search(r"\d", text)) or any(w in TIME_WORDS for w in words)
    # A name: a capitalised word that does not merely start the sentence.
    return bool(re.search(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+", text.strip()))


def split_sentences(candidates: Sequence[Candidate]) -> list[Sentence]:
    """Every distinct sentence of the candidate chunks, remembering the best rank of its chunk.

    Candidates bring their sentences' cosines to the question (HybridSearch.score_sentences); a chunk stored
    without sentence vectors offers its sentences on their terms alone (cosine 0).
    """
    seen: set[tuple[str, int, int]] = set()
    out = []
    for candidate in candidates:
        chunk = candidate.chunk
        scored = candidate.sentence_scores or tuple((start, end, 0.0) for start, end in sentence_spans(chunk.text))
        terms = sentence_terms(chunk.text, tuple((start, end) for start, end, _ in scored))
        for (start, end, cosine), held in zip(scored, terms, strict=True):
            sentence = Sentence(chunk, start, end, candidate.rank, held, semantic=cosine)
            if sentence.doc_span not in seen:
                seen.add(sentence.doc_span)
                out.append(sentence)
    return out


def extract_answer(
    question: str,
    candidates: Sequence[Candidate],
    *,
    index: BM25Index,
    threshold: float,
    focus: str | None = None,
    max_sentences: int = 3,
    weights: Weights = Weights(),
) -> Extraction:
    """Choose up to max_sentences sentences that answer the question, or abstain when confidence < threshold.

    `focus` is the question text whose terms must be covered (a follow-up's own words; retrieval may have used
    a longer, condensed query); the candidates' sentence scores must be cosines to it.
    """
    focus = focus or question
    terms = tokenize(focus, drop=QUERY_STOPWORDS)
    sentences = split_sentences(candidates)
    if not sentences or not terms:
        return Extraction(ABSTAIN, [], "abstained", 0.0, threshold, reason="no matching passages")
    idf = term_weights(terms, index)
    for term in answer_type_terms(focus) & idf.keys():
        idf[term] *= weights.type_noun_weight
    for s in sentences:
        s.lexical = coverage(idf, s.terms)
    for s in sentences:
        s.score = weights.semantic * s.semantic + weights.lexical * s.lexical + weights.chunk_prior / s.chunk_rank
    ranked = sorted(sentences, key=lambda s: -s.score)
    best = ranked[0]
    chosen = [best]
    found = set(best.terms)
    for s in ranked[1:]:
        if len(chosen) >= max_sentences or s.score < weights.extra_sentence_ratio * best.score:
            break
        if coverage(idf, found | s.terms) > coverage(idf, found):
            chosen.append(s)
            found |= s.terms

    kind = question_type(focus)
    type_ok = any(satisfies_type(s.text, kind) for s in chosen)
    covered = coverage(idf, found)
    confidence = (
        weights.confidence_semantic * best.semantic
        + weights.confidence_coverage * covered
        - (0.0 if type_ok else weights.type_penalty)
    )
    signals = {"semantic": best.semantic, "coverage": covered, "type_ok": float(type_ok)}
    if confidence < threshold:
        missing = [t for t in idf if t not in found]
        why = (
            f"best evidence scored {confidence:.2f}, below the {threshold:.2f} threshold"
            f" (meaning match {best.semantic:.2f}, {covered:.0%} of the question's key terms found)"
        )
        if missing:
            why += f"; not found: {', '.join(missing[:5])}"
        if not type_ok:
            why += f"; no {kind} in the best passage"
        return Extraction(ABSTAIN, [], "abstained", confidence, threshold, signals, why)

    chosen.sort(key=lambda s: s.doc_span)
    citations = [Citation.of_span(n, s.chunk, s.local_start, s.local_end) for n, s in enumerate(chosen, start=1)]
    text = " ".join(cite(c.quote, c.n) for c in citations)
    return Extraction(text, citations, "answered", confidence, threshold, signals)


def verify_citation(citation: Citation, chunk: Chunk, document_text: str | None) -> bool:
    """True when the quote is exactly the source text at its offsets (the full document when we have it)."""
    if document_text is not None:
        return document_text[citation.start : citation.end] == citation.quote
    local = citation.start - chunk.start
    return local >= 0 and chunk.text[local : citation.end - chunk.start] == citation.quote
