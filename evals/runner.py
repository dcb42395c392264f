"""Run a dataset through the assistant: one `ask` per question, plus a deep ranking from each retriever."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.dataset import QAItem, load_jsonl, load_squad2
from evals.metrics import (
    LEAD_SENTENCES,
    RANK_DEPTH,
    AnswerHaystack,
    abstention_auc,
    abstention_tradeoff,
    answer_words,
    best_f1,
    contains_answer,
    first_answer_rank,
    first_hit_rank,
    is_hit,
    lead_answer,
    lead_name,
    ratio,
    recall_at,
    share,
    short_answer_scores,
    summarize,
    summarize_lead,
)
from evals.nq import DEFAULT_WITHHOLD, NQ_FORMAT, load_nq_open, nq_collection
from evals.squad import SQUAD_COLLECTION, TextFile, ensure_indexed
from rag.dates import chunk_date
from rag.short_answer import asks_for_short_answer
from rag.types import IndexNotFound, RagError

if TYPE_CHECKING:
    from rag.assistant import Assistant
    from rag.types import Answer, Chunk

RETRIEVERS = ("hybrid", "bm25", "vector", "langchain-ensemble")
ANSWER_RETRIEVER = "hybrid"
# Thresholds the report shows around the configured one, so a user sees what moving it would change.
TRADEOFF_STEPS = (-0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15)
"""The retrieval `Assistant.ask` answers with; answer metrics belong to this retriever's row."""

Search = Callable[[str, "date | None"], Sequence["Chunk"]]
"""A ranking of (query, as_of): chunks best first."""
Progress = Callable[[int, int], None]
FORMATS = ("jsonl", "squad2", NQ_FORMAT)


@dataclass(frozen=True)
class Dataset:
    """Validated questions, plus the documents to index first when the dataset brings its own (SQuAD, NQ-open)."""

    name: str
    format: str
    items: list[QAItem]
    paragraphs: Sequence[TextFile] | None = None
    default_collection: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def load_dataset(
    path: Path,
    *,
    fmt: str = "jsonl",
    sample: int | None = None,
    seed: int = 0,
    split: str | None = None,
    withhold: float | None = None,
) -> Dataset:
    """Read and validate a whole dataset before any work starts; DatasetError says what is wrong where.

    `split` and `withhold` belong to NQ-open (defaults: all, 0.2); `seed` drives its split and withheld share
    as well as the sample.
    """
    if fmt not in FORMATS:
        raise RagError(f"unknown dataset format '{fmt}' (choose from: {', '.join(FORMATS)})")
    if sample is not None and sample < 1:
        raise RagError("--sample must be at least 1")
    if fmt != NQ_FORMAT and (split is not None or withhold is not None):
        raise RagError(f"--split and --withhold apply to --format {NQ_FORMAT} only")
    if fmt == "squad2":
        paragraphs, items = load_squad2(path, sample=sample, seed=seed)
        details = {"format": fmt, "sample": len(items), "seed": seed, "paragraphs": len(paragraphs)}
        return Dataset(path.name, fmt, items, paragraphs, SQUAD_COLLECTION, details)
    if fmt == NQ_FORMAT:
        withhold = DEFAULT_WITHHOLD if withhold is None else withhold
        nq = load_nq_open(path, split=split or "all", withhold=withhold, seed=seed)
        items, details = _sampled(nq.items, sample, seed), dict(nq.details)
        if len(items) < len(nq.items):
            details["sample"] = len(items)
        return Dataset(path.name, fmt, items, nq.passages, nq_collection(withhold, seed), details)
    return Dataset(path.name, fmt, _sampled(load_jsonl(path), sample, seed), details={"format": fmt})


def _sampled(items: list[QAItem], sample: int | None, seed: int) -> list[QAItem]:
    """A seeded sample of the items, in their original order (all of them when sample is None or larger)."""
    if sample is None or sample >= len(items):
        return items
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), sample))]


def prepare_collection(dataset: Dataset, assistant: Assistant, *, progress: Progress | None = None) -> None:
    """Index the dataset's own documents (idempotent), and refuse to run against an empty collection."""
    if dataset.paragraphs is not None:
        ensure_indexed(dataset.paragraphs, settings=assistant.settings, store=assistant.store, progress=progress)
    if assistant.store.count() == 0:
        raise IndexNotFound(assistant.settings.chroma_url or assistant.settings.home, assistant.settings.collection)


def make_searchers(assistant: Assistant, retrievers: Sequence[str]) -> dict[str, Search]:
    """A ranking function per retriever name, each returning RANK_DEPTH chunks best first."""
    searchers: dict[str, Search] = {}
    for name in retrievers:
        if name == "langchain-ensemble":
            from evals.baseline import EnsembleBaseline

            searchers[name] = _dateless(EnsembleBaseline(assistant, depth=RANK_DEPTH).search)
        else:
            searchers[name] = _assistant_search(assistant, name)
    return searchers


def _dateless(search: Callable[[str], list[Chunk]]) -> Search:
    """A ranking that knows no dates (LangChain's ensemble), called like ours."""

    def ranked(query: str, as_of: date | None) -> list[Chunk]:
        return search(query)

    return ranked


def _assistant_search(assistant: Assistant, method: str) -> Search:
    def search(query: str, as_of: date | None) -> list[Chunk]:
        found = assistant.retrieve(query, k=RANK_DEPTH, method=method, as_of=as_of)  # type: ignore[arg-type]
        return [c.chunk for c in found]

    return search


def check_citations(assistant: Assistant, answer: Answer) -> tuple[int, list[Chunk]]:
    """How many citations quote their cited chunk verbatim at the cited offsets, and the cited chunks."""
    chunks = {c.id: c for c in assistant.store.get_chunks(list(dict.fromkeys(c.chunk_id for c in answer.citations)))}
    valid = 0
    for citation in answer.citations:
        chunk = chunks.get(citation.chunk_id)
        if chunk is None or not chunk.start <= citation.start <= citation.end <= chunk.end:
            continue
        valid += chunk.text[citation.start - chunk.start : citation.end - chunk.start] == citation.quote
    return valid, list(chunks.values())


def lead_baselines(top_chunk: str, item: QAItem) -> dict[str, dict[str, Any]]:
    """What each lead baseline answers from the hybrid top chunk: gold in it, F1, words (None when unanswerable)."""
    leads = {}
    for sentences in LEAD_SENTENCES:
        text = lead_answer(top_chunk, sentences)
        leads[lead_name(sentences)] = {
            "correct": contains_answer(text, item.answers) if item.answerable else None,
            "f1": best_f1(text, item.answers) if item.answerable else None,
            "words": answer_words(text),
        }
    return leads


def existed_by(chunk: Chunk, day: date | None) -> bool:
    """True when the chunk's document could be known on `day`: dated on or before it, undated, or no day given."""
    dated = chunk_date(chunk.metadata)
    return day is None or dated is None or dated <= day


def score_question(
    assistant: Assistant,
    item: QAItem,
    searchers: dict[str, Search],
    haystack: AnswerHaystack | None = None,
    *,
    ask_as_of: bool = True,
) -> dict[str, Any]:
    """Ask one question, rank with every retriever, and record what the metrics need.

    `haystack` holds every chunk of the collection, for the ceiling: is a gold answer anywhere in it? With
    `ask_as_of` False the question is asked without its line's as_of; the timely ranks and answers still judge it
    by that date (see EvalRun.timeliness).
    """
    started = time.perf_counter()
    question_day = item.as_of_date
    as_of = question_day if ask_as_of else None
    answer = assistant.ask(item.question, history=list(item.history), as_of=as_of)
    latency_ms = (time.perf_counter() - started) * 1000
    # Follow-ups are ranked with the assistant's condensed query, so every retriever sees the same query.
    query = answer.condensed_query or item.question
    hit_rank: dict[str, int | None] = {}
    answer_rank: dict[str, int | None] = {}
    timely_rank: dict[str, int | None] = {}
    retrieve_ms: dict[str, float] = {}
    leads: dict[str, dict[str, Any]] | None = None
    for name, search in searchers.items():
        started = time.perf_counter()
        ranking = search(query, as_of)
        retrieve_ms[name] = round((time.perf_counter() - started) * 1000, 2)
        texts = [c.text for c in ranking]
        hit_rank[name] = first_hit_rank(texts, item) if item.answerable else None
        answer_rank[name] = first_answer_rank(texts, item.answers) if item.answerable else None
        # Only documents that existed on the question's date count; a later one's answer is hindsight.
        timely = [c.text if existed_by(c, question_day) else "" for c in ranking]
        timely_rank[name] = first_answer_rank(timely, item.answers) if item.answerable else None
        if name == ANSWER_RETRIEVER:
            leads = lead_baselines(texts[0] if texts else "", item)
    valid, cited = check_citations(assistant, answer)
    answered = not answer.abstained
    supported = answered and any(is_hit(c.text, item) or contains_answer(c.text, item.answers) for c in cited)
    correct = answered and contains_answer(answer.text, item.answers)
    # The gold answer is in the answer and in a cited document that existed on the question's date.
    timely_correct = correct and any(
        existed_by(c, question_day) and contains_answer(c.text, item.answers) for c in cited
    )
    short = answer.short_answer.text if answer.short_answer is not None and answered else None
    # Short answers are scored where the question asks for one (a name, number, date, place); None elsewhere.
    asks_short = item.answerable and asks_for_short_answer(item.question) is not None
    short_em, short_f1 = short_answer_scores(short, item.answers) if asks_short else (None, None)
    return {
        "id": item.id,
        "question": item.question,
        "history": [list(turn) for turn in item.history],
        "answerable": item.answerable,
        "expected": list(item.answers),
        "got": answer.text,
        "status": answer.status,
        "abstained": answer.abstained,
        "abstain_reason": answer.abstain_reason,
        "short_answer": short,
        "correct": correct if item.answerable else None,
        "timely_correct": timely_correct if item.answerable else None,
        "f1": (best_f1(answer.text, item.answers) if answered else 0.0) if item.answerable else None,
        "words": answer_words(answer.text) if answered else None,
        "short_em": short_em,
        "short_f1": short_f1,
        "citations": len(answer.citations),
        "valid_citations": valid,
        "supported": supported if item.answerable and answered else None,
        "hit_rank": hit_rank,
        "answer_rank": answer_rank,
        "timely_answer_rank": timely_rank,
        "in_collection": haystack.contains(item.answers) if haystack is not None and item.answerable else None,
        "lead": leads,
        "latency_ms": round(latency_ms, 2),
        "retrieve_ms": retrieve_ms,
        "condensed_query": query,
        "as_of": answer.as_of,
        "question_as_of": item.as_of,
        # The extractive evidence score that abstention compares with RAG_ABSTAIN_THRESHOLD (None in LLM mode).
        "confidence": answer.debug.get("confidence"),
    }


@dataclass
class EvalRun:
    """Per-question results of one run, and how it was configured."""

    config: dict[str, Any]
    per_question: list[dict[str, Any]] = field(default_factory=list)

    @property
    def retrievers(self) -> list[str]:
        """Every retriever ranked in this run, the primary one first."""
        return list(self.config["retrievers"])

    def metrics(self, retriever: str | None = None) -> dict[str, Any]:
        """The metrics object for one retriever (default: the primary one)."""
        retriever = retriever or self.config["retriever"]
        # The primary row always carries the answers: they are what the user of this run gets.
        with_answers = retriever == self.config["retriever"] or retriever == ANSWER_RETRIEVER
        return summarize(self.per_question, retriever, with_answers=with_answers)

    def baselines(self) -> dict[str, dict[str, Any]]:
        """The lead baselines' rows, in a --compare run (they answer from the hybrid ranking)."""
        if len(self.retrievers) < 2 or not self.per_question or self.per_question[0]["lead"] is None:
            return {}
        return {lead_name(s): summarize_lead(self.per_question, s) for s in LEAD_SENTENCES}

    def baseline_ratios(self) -> dict[str, dict[str, float | None]]:
        """Ours (the hybrid answer row) ÷ each lead baseline, for answer_accuracy and answer_words."""
        if not (baselines := self.baselines()):
            return {}
        ours = self.metrics(ANSWER_RETRIEVER)
        return {
            name: {key: ratio(ours[key], row[key]) for key in ("answer_accuracy", "answer_words")}
            for name, row in baselines.items()
        }

    def ceiling(self) -> dict[str, float | None] | None:
        """The share of answerable questions whose gold answer is anywhere in the collection, and ours relative to it.

        None when the run did not read the collection (or has no answerable questions).
        """
        ours = self.metrics(ANSWER_RETRIEVER) if ANSWER_RETRIEVER in self.retrievers else self.metrics()
        if (ceiling := ours["answer_ceiling"]) is None:
            return None
        return {
            "answer_ceiling": ceiling,
            "answer_recall@5_of_ceiling": ratio(ours["answer_recall@5"], ceiling),
            "answer_accuracy_of_ceiling": ratio(ours["answer_accuracy"], ceiling),
        }

    def timeliness(self) -> dict[str, Any] | None:
        """Answer recall@5 and accuracy counting only documents that existed on each question's as_of date.

        A document dated after the question could not have answered it then: with the as_of asked this equals the
        plain metrics, without it (`rag eval --ignore-as-of`) it shows how much of them came from hindsight. None
        unless some answerable line carries an as_of.
        """
        retriever = ANSWER_RETRIEVER if ANSWER_RETRIEVER in self.retrievers else self.config["retriever"]
        dated = [q for q in self.per_question if q["answerable"] and q.get("question_as_of")]
        if not dated:
            return None
        return {
            "questions": len(dated),
            "as_of_asked": self.config.get("as_of_asked", True),
            "answer_recall@5": recall_at([q["timely_answer_rank"][retriever] for q in dated], 5),
            "answer_recall@5_any_date": recall_at([q["answer_rank"][retriever] for q in dated], 5),
            "answer_accuracy": share([q["timely_correct"] for q in dated]),
            "answer_accuracy_any_date": share([q["correct"] for q in dated]),
        }

    def ranking_metrics(self, retriever: str) -> dict[str, Any]:
        """Retrieval metrics alone, with the retriever's own ranking time as latency (for like-for-like tables)."""
        return summarize(self.per_question, retriever, with_answers=False)

    def abstention(self) -> dict[str, Any] | None:
        """The threshold-free quality of the abstention signal and the trade-off around the configured threshold.

        None unless answers were extracted for both answerable and unanswerable questions.
        """
        auc = abstention_auc(self.per_question)
        if auc is None:
            return None
        current = float(self.config["abstain_threshold"])
        around = sorted({current} | {round(min(max(current + step, 0.0), 1.0), 2) for step in TRADEOFF_STEPS if step})
        return {"auc": auc, "threshold": current, "tradeoff": abstention_tradeoff(self.per_question, around)}

    def to_json(self) -> dict[str, Any]:
        """`rag eval --json`: the metrics, per_question and config, plus what else was measured.

        `compare`, `baselines` (the lead rows) and `baseline_ratios` appear when several retrievers ran; `ceiling`
        when the collection was read; `abstention` when extractive answers met both kinds of question; `timeliness`
        when lines carry an as_of.
        """
        out = {**self.metrics(), "per_question": self.per_question, "config": self.config}
        if len(self.retrievers) > 1:
            out["compare"] = {name: self.metrics(name) for name in self.retrievers}
        if baselines := self.baselines():
            out["baselines"] = baselines
            out["baseline_ratios"] = self.baseline_ratios()
        if (ceiling := self.ceiling()) is not None:
            out["ceiling"] = ceiling
        if (abstention := self.abstention()) is not None:
            out["abstention"] = abstention
        if (timeliness := self.timeliness()) is not None:
            out["timeliness"] = timeliness
        return out


def evaluate(
    assistant: Assistant,
    items: Sequence[QAItem],
    *,
    retrievers: Sequence[str],
    config: dict[str, Any],
    progress: Progress | None = None,
    ask_as_of: bool = True,
) -> EvalRun:
    """Run every question; `retrievers[0]` is the primary retriever whose metrics head the report.

    `ask_as_of` False asks every question without its line's as_of (the timeliness metrics still use it).
    """
    assistant.warm_up()  # latency is measured warm, as a long-running app would answer
    searchers = make_searchers(assistant, retrievers)
    run = EvalRun(
        config={
            **config,
            "retriever": retrievers[0],
            "retrievers": list(retrievers),
            "answers_from": ANSWER_RETRIEVER,
            "rank_depth": RANK_DEPTH,
            "mode": assistant.answer_mode,
            "k": assistant.settings.k,
            "abstain_threshold": assistant.settings.abstain_threshold,
            "collection": assistant.settings.collection,
            "embedding_model": assistant.embeddings.name,
            "embedding_precision": assistant.embeddings.bulk_precision,
            "as_of_asked": ask_as_of,
        }
    )
    # One untimed warm-up, so model loading and index building don't land in the first question's latency.
    assistant.ask(items[0].question)
    for search in searchers.values():
        search(items[0].question, items[0].as_of_date if ask_as_of else None)
    haystack = AnswerHaystack(chunk.text for chunk in assistant.store.iter_chunks())
    for done, item in enumerate(items, start=1):
        run.per_question.append(score_question(assistant, item, searchers, haystack, ask_as_of=ask_as_of))
        if progress is not None:
            progress(done, len(items))
    return run
