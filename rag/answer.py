"""Extractive answers: score every retrieved sentence, cite the likeliest under a word budget, grade confidence."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rag.bm25 import QUERY_STOPWORDS, BM25Index, coverage, sentence_terms, term_weights, tokenize
from rag.markers import cite
from rag.prompts import ABSTAIN, UNCERTAIN
from rag.short_answer import answer_type_terms, asks_for_short_answer, score_candidates
from rag.text import sentence_spans
from rag.types import AnswerStatus, Candidate, Chunk, Citation

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


SENTENCE_FEATURES = (
    "bias",
    "cosine",  # the sentence's stored (late-chunked) vector's cosine to the question
    "cosine_gap",  # cosine minus the best cosine among all retrieved sentences (<= 0)
    "context_cosine",  # the better cosine of its neighbours in the chunk: answers often follow the matching line
    "lexical",  # share of the question's IDF-weighted terms the sentence holds
    "lexical_gap",  # lexical minus the best lexical among all retrieved sentences (<= 0)
    "title",  # share of the question's terms in the chunk's title (the subject is often named only there)
    "predicate",  # share of the question's weight outside its chunk's title (the subject) that the sentence holds
    "novelty",  # share of the sentence's terms the question lacks: an answer says something new
    "chunk_rank",  # 1 / final rank of its chunk
    "rerank_gap",  # its chunk's re-rank score minus the top chunk's (<= 0)
    "position",  # 1 / (1 + index of the sentence in its chunk)
    "words",  # log(1 + words)
    "type_ok",  # the question asks for a number/time/name and the sentence holds one
    "type_missing",  # it asks for one and the sentence holds none
    "short",  # the short-answer model's best phrase in it (rag.short_answer), for who/when/where/how-many questions
    "short_missing",  # the question asks for a short answer and the sentence holds no candidate phrase
)
CONFIDENCE_FEATURES = (
    "bias",
    "best_logit",  # the best sentence's score (log-odds that it holds the answer)
    "chosen_probability",  # chance that at least one chosen sentence holds it
    "cosine",  # best cosine among the chosen sentences
    "lexical",  # best lexical coverage among the chosen sentences
    "coverage",  # share of the question's terms the chosen sentences hold together
    "title",  # best title coverage among the chosen sentences' chunks
    "rerank",  # the top chunk's re-rank score
    "rerank_margin",  # top re-rank score minus the runner-up's
    "type_missing",  # the question asks for a type no chosen sentence holds
    "short",  # the short-answer model's best phrase among the chosen sentences
    "asks_short",  # the question asks for a short answer at all
    "agree",  # BM25 and the vectors both rank the top chunk first
    "next_logit",  # the best sentence left out (a strong one means the choice is a toss-up)
    "found",  # share of the question's term weight anywhere in the retrieved chunks (texts and titles)
    "rarest",  # the question's rarest term is somewhere in the retrieved chunks
)
# Relevance reads only how well retrieval matched, never the question's wording. All CONFIDENCE_FEATURES abstained
# on 0.13 of NQ-open dev's unanswerable questions at the refusal limit (their many weights, on 119 unanswerable
# questions, took odd signs, and lexical coverage refuses paraphrases); cosine and re-rank score alone on 0.30
# (2-fold); with `found` and `rarest` on 0.35, refusing fewer: a question whose passage is missing often names a
# thing no retrieved chunk mentions. Since the sentence model is ranked as a list and calibrated, the best sentence's
# score (best_logit) also tells them apart: 0.41 (2-fold), refusing fewer.
RELEVANCE_FEATURES = ("bias", "cosine", "rerank", "found", "rarest", "best_logit")
NO_NEXT_LOGIT = -5.0  # next_logit when every sentence was chosen
POOL = 8  # sentences, best first, that the choice considers


@dataclass(frozen=True)
class AnswerModel:
    """The fitted weights of extractive answering.

    - `sentence`: weights over SENTENCE_FEATURES of a softmax over a question's sentences (which one holds the
      answer); `sentence_calibration` reads a sentence's score into P(it holds a gold answer), a logistic over
      (1, score, score minus the question's best score). Ranked as a list, the sentences are compared with one
      another, as the choice compares them; the calibration gives the knapsack below its probabilities. Features
      that differ by a per-question constant (cosine and cosine_gap) share a weight: the softmax can't tell them apart;
    - `relevance`: logistic weights over `relevance_features` (of CONFIDENCE_FEATURES), P(the documents hold the
      answer at all), compared with Settings.abstain_threshold: below it the answer abstains;
    - `confidence`: logistic weights over CONFIDENCE_FEATURES, P(the chosen sentences hold a gold answer),
      compared with Settings.answer_threshold: at or above it the answer is `answered`, else `uncertain`;
    - the answer is the set of at most max_sentences of the best POOL sentences, within `max_words` together,
      that maximises P(one of them holds the answer) minus `word_cost` per 100 words: a sure best sentence stands
      alone, an unsure one brings company (the best one alone is always allowed).

    Refit with `python -m evals.fit answer` (evals/fit/answer.py) on NQ-open dev, SQuAD 2.0 dev (seed 1, not the
    benchmark sample) and RealTimeQA 2022; see BENCHMARKS.md, "Answer calibration (issue 11)".
    """

    sentence: tuple[float, ...] = (
        0.0,
        3.731,
        3.731,
        -0.064,
        -0.685,
        -0.685,
        6.665,
        3.293,
        -0.025,
        -0.172,
        2.924,
        1.265,
        0.255,
        0.613,
        -0.613,
        3.702,
        -1.019,
    )
    sentence_calibration: tuple[float, float, float] = (-2.149, 0.249, 0.311)
    relevance: tuple[float, ...] = (-4.254, 1.504, 2.177, 0.869, 0.143, 0.863)
    confidence: tuple[float, ...] = (
        -1.357,
        1.382,
        0.699,
        1.759,
        0.57,
        -0.016,
        -0.118,
        -0.274,
        0.659,
        -0.243,
        -0.714,
        -0.117,
        0.522,
        -0.898,
        0.266,
        -0.066,
    )
    max_words: int = 60
    word_cost: float = 0.35
    relevance_features: tuple[str, ...] = RELEVANCE_FEATURES

    def sentence_logits(self, rows: np.ndarray) -> np.ndarray:
        """Log-odds that each sentence holds the answer, from its question's rows of SENTENCE_FEATURES."""
        scores = rows @ np.asarray(self.sentence)
        return calibration_columns(scores) @ np.asarray(self.sentence_calibration)

    @property
    def relevance_columns(self) -> list[int]:
        """Where relevance_features sit in a row of CONFIDENCE_FEATURES."""
        return [CONFIDENCE_FEATURES.index(name) for name in self.relevance_features]

    def relevance_of(self, features: np.ndarray) -> float:
        """P(the documents hold the answer) from a row of CONFIDENCE_FEATURES."""
        return logistic(features[self.relevance_columns], self.relevance)


def calibration_columns(scores: np.ndarray) -> np.ndarray:
    """(1, score, score minus the best score) per sentence of one question: what sentence_calibration weighs."""
    return np.column_stack([np.ones_like(scores), scores, scores - scores.max()])


@dataclass
class Sentence:
    """A candidate answer sentence inside a retrieved chunk."""

    candidate: Candidate
    local_start: int
    local_end: int
    index: int
    terms: frozenset[str]
    semantic: float = 0.0
    context: float = 0.0
    lexical: float = 0.0
    short: float = 0.0
    logit: float = 0.0

    @property
    def chunk(self) -> Chunk:
        """The chunk the sentence is in."""
        return self.candidate.chunk

    @property
    def text(self) -> str:
        """The sentence as it appears in the chunk."""
        return self.chunk.text[self.local_start : self.local_end]

    @property
    def words(self) -> int:
        """Its length in words, as answer length is counted."""
        return len(self.text.split())

    @property
    def probability(self) -> float:
        """The sentence model's chance that it holds the answer."""
        return 1.0 / (1.0 + math.exp(-self.logit))

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
    likeliest: tuple[str, int] | None = None  # Evidence.likeliest, for the short answer


@dataclass
class Evidence:
    """What the answer step read: every sentence scored, the chosen ones, and the confidence features."""

    sentences: list[Sentence]
    chosen: list[Sentence]
    features: np.ndarray
    signals: dict[str, float]
    kind: str | None
    missing: list[str]  # the question's terms the chosen sentences lack
    unseen: list[str]  # those no retrieved chunk holds

    def citations(self) -> list[Citation]:
        """The chosen sentences cited in document order, numbered from 1."""
        chosen = sorted(self.chosen, key=lambda s: s.doc_span)
        return [Citation.of_span(n, s.chunk, s.local_start, s.local_end) for n, s in enumerate(chosen, start=1)]

    @property
    def likeliest(self) -> tuple[str, int]:
        """(source, start) of the chosen sentence likeliest to hold the answer: the short answer looks there first."""
        source, start, _ = max(self.chosen, key=lambda s: s.logit).doc_span
        return source, start


# The asked-for noun ("which *city*") is stated by the answer, not named, so it weighs less in lexical coverage.
TYPE_NOUN_WEIGHT = 0.3


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
    """Every distinct sentence of the candidate chunks, in candidate order, with its cosine and its neighbours'.

    Candidates bring their sentences' cosines to the question (HybridSearch.score_sentences); a chunk stored
    without sentence vectors offers its sentences on their terms alone (cosine 0).
    """
    seen: set[tuple[str, int, int]] = set()
    out = []
    for candidate in candidates:
        chunk = candidate.chunk
        scored = candidate.sentence_scores or tuple((start, end, 0.0) for start, end in sentence_spans(chunk.text))
        terms = sentence_terms(chunk.text, tuple((start, end) for start, end, _ in scored))
        cosines = [cosine for *_, cosine in scored]
        for i, ((start, end, cosine), held) in enumerate(zip(scored, terms, strict=True)):
            neighbours = cosines[max(i - 1, 0) : i] + cosines[i + 1 : i + 2]
            sentence = Sentence(candidate, start, end, i, held, semantic=cosine, context=max(neighbours, default=0.0))
            if sentence.doc_span not in seen:
                seen.add(sentence.doc_span)
                out.append(sentence)
    return out


def question_weights(focus: str, index: BM25Index) -> dict[str, float]:
    """IDF of the question's key terms in the collection (what the lexical features weigh by)."""
    return term_weights(tokenize(focus, drop=QUERY_STOPWORDS), index)


def short_scores(focus: str, sentences: Sequence[Sentence]) -> bool:
    """Fill each sentence's best short-answer phrase score; False when the question asks for no short answer."""
    kind = asks_for_short_answer(focus)
    if kind is None:
        return False
    spans = [(i, s.chunk, s.local_start, s.local_end) for i, s in enumerate(sentences)]
    for scored in score_candidates(focus, kind, spans):
        sentences[scored.n].short = max(sentences[scored.n].short, scored.score)
    return True


def sentence_features(
    sentences: Sequence[Sentence], idf: dict[str, float], kind: str | None, *, asks_short: bool
) -> np.ndarray:
    """One row of SENTENCE_FEATURES per sentence (fills each sentence's lexical coverage on the way)."""
    for s in sentences:
        s.lexical = coverage(idf, s.terms)
    best_cosine = max(s.semantic for s in sentences)
    best_lexical = max(s.lexical for s in sentences)
    top_rerank = max(s.candidate.rerank_score or 0.0 for s in sentences)
    titles: dict[str, tuple[float, dict[str, float]]] = {}
    rows = []
    for s in sentences:
        chunk = s.chunk
        if chunk.id not in titles:
            title_terms = frozenset(tokenize(chunk.title.replace("_", " ")))
            rest = {t: w for t, w in idf.items() if t not in title_terms}
            titles[chunk.id] = coverage(idf, title_terms), rest
        title, rest = titles[chunk.id]
        new = len(s.terms - idf.keys()) / len(s.terms) if s.terms else 0.0
        holds = satisfies_type(s.text, kind)
        rows.append(
            (
                1.0,
                s.semantic,
                s.semantic - best_cosine,
                s.context,
                s.lexical,
                s.lexical - best_lexical,
                title,
                coverage(rest, s.terms),
                new,
                1.0 / s.candidate.rank,
                (s.candidate.rerank_score or 0.0) - top_rerank,
                1.0 / (1 + s.index),
                math.log1p(s.words),
                float(kind is not None and holds),
                float(kind is not None and not holds),
                s.short,
                float(asks_short and s.short == 0.0),
            )
        )
    return np.asarray(rows, dtype=np.float64)


def choose_sentences(
    ranked: Sequence[Sentence], *, max_words: int, max_sentences: int, word_cost: float
) -> list[Sentence]:
    """The subset of the best POOL sentences with the most P(one holds the answer) - word_cost × words / 100.

    At most max_sentences, within max_words together; the best sentence alone is always a choice. Returned best
    first.
    """
    pool = ranked[:POOL]
    best, value = [pool[0]], -math.inf
    for size in range(1, max_sentences + 1):
        for combo in itertools.combinations(pool, size):
            length = sum(s.words for s in combo)
            if size > 1 and length > max_words:
                continue
            v = 1.0 - math.prod(1.0 - s.probability for s in combo) - word_cost * length / 100
            if v > value:
                best, value = list(combo), v
    return best


def sentence_table(
    focus: str, candidates: Sequence[Candidate], idf: dict[str, float]
) -> tuple[list[Sentence], np.ndarray, dict[str, float], str | None] | None:
    """The sentences, their SENTENCE_FEATURES rows, the term weights and the asked-for type (None: no text)."""
    sentences = split_sentences(candidates)
    if not sentences or not idf:
        return None
    weights = dict(idf)
    for term in answer_type_terms(focus) & weights.keys():
        weights[term] *= TYPE_NOUN_WEIGHT
    kind = question_type(focus)
    asks_short = short_scores(focus, sentences)
    return sentences, sentence_features(sentences, weights, kind, asks_short=asks_short), weights, kind


def read_evidence(
    focus: str,
    candidates: Sequence[Candidate],
    idf: dict[str, float],
    *,
    model: AnswerModel,
    max_sentences: int,
) -> Evidence | None:
    """Score every sentence, choose the answer's sentences and compute the confidence features (None: no text)."""
    table = sentence_table(focus, candidates, idf)
    if table is None:
        return None
    sentences, rows, weights, kind = table
    for s, logit in zip(sentences, model.sentence_logits(rows).tolist(), strict=True):
        s.logit = logit
    ranked = sorted(sentences, key=lambda s: -s.logit)
    chosen = choose_sentences(ranked, max_words=model.max_words, max_sentences=max_sentences, word_cost=model.word_cost)
    found = frozenset().union(*(s.terms for s in chosen))
    type_ok = kind is None or any(satisfies_type(s.text, kind) for s in chosen)
    reranks = [*sorted((c.rerank_score or 0.0 for c in candidates), reverse=True), 0.0]
    best = ranked[0]
    taken = {id(s) for s in chosen}
    left_out = [s for s in ranked if id(s) not in taken]
    top = min(candidates, key=lambda c: c.rank)
    signals = {
        "semantic": best.semantic,
        "lexical": best.lexical,
        "coverage": coverage(weights, found),
        "chosen_probability": 1.0 - math.prod(1.0 - s.probability for s in chosen),
        "type_ok": float(type_ok),
    }
    title = max(coverage(weights, frozenset(tokenize(s.chunk.title.replace("_", " ")))) for s in chosen)
    retrieved = frozenset().union(
        *(s.terms for s in sentences), *(tokenize(c.chunk.title.replace("_", " ")) for c in candidates)
    )
    rarest = max(weights, key=lambda t: weights[t])
    features = np.asarray(
        (
            1.0,
            best.logit,
            signals["chosen_probability"],
            max(s.semantic for s in chosen),
            max(s.lexical for s in chosen),
            signals["coverage"],
            title,
            reranks[0],
            reranks[0] - reranks[1],
            float(not type_ok),
            max(s.short for s in chosen),
            float(asks_for_short_answer(focus) is not None),
            float(top.bm25_rank == 1 and top.vector_rank == 1),
            left_out[0].logit if left_out else NO_NEXT_LOGIT,
            coverage(weights, retrieved),
            float(rarest in retrieved),
        )
    )
    missing = [t for t in weights if t not in found]
    return Evidence(sentences, chosen, features, signals, kind, missing, [t for t in missing if t not in retrieved])


def logistic(features: np.ndarray, weights: Sequence[float]) -> float:
    """sigmoid(features · weights)."""
    return 1.0 / (1.0 + math.exp(-float(features @ np.asarray(weights))))


def grade(relevance: float, confidence: float, *, abstain_threshold: float, answer_threshold: float) -> AnswerStatus:
    """Abstained when relevance is below abstain_threshold, else answered from answer_threshold up, else uncertain."""
    if relevance < abstain_threshold:
        return "abstained"
    return "answered" if confidence >= answer_threshold else "uncertain"


def answer_text(status: AnswerStatus, citations: Sequence[Citation]) -> str:
    """The answer's words: the cited quotes in document order, after one plain line when it is unsure."""
    quotes = " ".join(cite(c.quote, c.n) for c in citations)
    return f"{UNCERTAIN}\n{quotes}" if status == "uncertain" else quotes


def extract_answer(
    question: str,
    candidates: Sequence[Candidate],
    *,
    index: BM25Index,
    abstain_threshold: float,
    answer_threshold: float,
    focus: str | None = None,
    max_sentences: int = 3,
    model: AnswerModel = AnswerModel(),
) -> Extraction:
    """Cite the sentences likeliest to answer, graded answered / uncertain, or abstain when nothing is relevant.

    `focus` is the question text the sentences are matched to (a follow-up's own words; retrieval may have used
    a longer, condensed query); the candidates' sentence scores must be cosines to it.
    """
    focus = focus or question
    evidence = read_evidence(
        focus, candidates, question_weights(focus, index), model=model, max_sentences=max_sentences
    )
    if evidence is None:
        return Extraction(ABSTAIN, [], "abstained", 0.0, abstain_threshold, reason="no matching passages")
    relevance = model.relevance_of(evidence.features)
    confidence = logistic(evidence.features, model.confidence)
    status = grade(relevance, confidence, abstain_threshold=abstain_threshold, answer_threshold=answer_threshold)
    signals = {**evidence.signals, "answer_confidence": confidence, "answer_threshold": answer_threshold}
    if status == "abstained":
        signals_text = (
            f"meaning match {evidence.signals['semantic']:.2f}, "
            f"{evidence.signals['coverage']:.0%} of the question's key terms found"
        )
        why = f"best evidence scored {relevance:.2f}, below the {abstain_threshold:.2f} threshold ({signals_text})"
        if evidence.missing:
            why += f"; not found: {', '.join(evidence.missing[:5])}"
        if evidence.unseen:
            why += f"; in no retrieved passage: {', '.join(evidence.unseen[:5])}"
        if not evidence.signals["type_ok"]:
            why += f"; no {evidence.kind} in the best passage"
        return Extraction(ABSTAIN, [], "abstained", relevance, abstain_threshold, signals, why)

    citations = evidence.citations()
    # Assistant.short_answer attaches the short answer (rag.short_answer) once the citations are verified.
    return Extraction(
        answer_text(status, citations),
        citations,
        status,
        relevance,
        abstain_threshold,
        signals,
        likeliest=evidence.likeliest,
    )


def verify_citation(citation: Citation, chunk: Chunk, document_text: str | None) -> bool:
    """True when the quote is exactly the source text at its offsets (the full document when we have it)."""
    if document_text is not None:
        return document_text[citation.start : citation.end] == citation.quote
    local = citation.start - chunk.start
    return local >= 0 and chunk.text[local : citation.end - chunk.start] == citation.quote
