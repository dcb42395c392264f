"""Scoring: SQuAD-style normalisation and F1, retrieval hits and ranks, and the aggregate metrics."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from evals.dataset import QAItem
from rag.markers import strip_markers
from rag.text import sentence_spans

ARTICLES = re.compile(r"\b(a|an|the)\b")
METRIC_KEYS = (
    "recall@1",
    "recall@5",
    "recall@10",
    "mrr@10",
    "answer_recall@1",
    "answer_recall@5",
    "answer_ceiling",
    "answer_accuracy",
    "answer_f1",
    "answer_words",
    "short_answer_em",
    "short_answer_f1",
    "short_answer_rate",
    "citation_validity",
    "citation_support",
    "abstention_recall",
    "false_abstention_rate",
    "refusal_rate",
    "answered_share",
    "answered_precision",
    "confident_error_rate",
    "confident_unanswerable_rate",
    "uncertain_unanswerable_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "n",
)
ANSWER_KEYS = METRIC_KEYS[METRIC_KEYS.index("answer_accuracy") : METRIC_KEYS.index("latency_p50_ms")]
"""The metrics that need answers, not just rankings."""
LEAD_SENTENCES = (1, 2, 3)
"""The lead baselines: the first 1, 2 and 3 sentences of the hybrid top chunk, taken as the answer."""
RANK_DEPTH = 20
"""How deep every ranking is read, so recall@k curves run to k = 20 whatever k the answer step uses."""


def _is_punctuation(char: str) -> bool:
    # SQuAD's script strips ASCII punctuation only; curly quotes and dashes in news text must go too.
    return char in string.punctuation or unicodedata.category(char).startswith("P")


def normalize_answer(text: str) -> str:
    """Lower case, punctuation and articles out, whitespace folded: the SQuAD evaluation script's rule.

    One difference: punctuation becomes a space rather than nothing, so "United Nations-backed" contains
    "United Nations" and "officers.Kenya" stays two words.
    """
    text = "".join(" " if _is_punctuation(ch) else ch for ch in text.lower())
    return " ".join(ARTICLES.sub(" ", text).split())


def contains_phrase(haystack: str, needle: str) -> bool:
    """True when the normalised needle occurs in the normalised haystack on word boundaries."""
    return bool(needle) and f" {needle} " in f" {haystack} "


def contains_answer(text: str, answers: Sequence[str]) -> bool:
    """True when text contains any gold answer, after normalisation ("270" does not match "2700")."""
    norm = normalize_answer(text)
    return any(contains_phrase(norm, normalize_answer(a)) for a in answers)


class AnswerHaystack:
    """Many texts normalised once, so asking whether a gold answer occurs in any of them is one substring search."""

    def __init__(self, texts: Iterable[str]) -> None:
        # A NUL between texts (normalisation leaves none) keeps a phrase from running across two of them.
        self._joined = " \0 ".join(normalize_answer(t) for t in texts)

    def contains(self, answers: Sequence[str]) -> bool:
        """True when any gold answer occurs in one of the texts, on word boundaries, as contains_answer."""
        return any(contains_phrase(self._joined, normalize_answer(a)) for a in answers)


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 between a prediction and one gold answer."""
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def best_f1(prediction: str, answers: Sequence[str]) -> float:
    """The best token F1 over the gold answers; [n] citation markers are not words of the answer."""
    prediction = strip_markers(prediction)
    return max((token_f1(prediction, a) for a in answers), default=0.0)


def is_hit(chunk_text: str, item: QAItem) -> bool:
    """Whether a retrieved chunk counts as finding the question's evidence.

    A chunk is a hit when it contains an evidence string. Evidence longer than a chunk (a SQuAD paragraph split
    in two) can't be contained whole, so a chunk that lies inside an evidence string and contains a gold answer
    is a hit too. Without evidence, a chunk that contains a gold answer is a hit.
    """
    text = normalize_answer(chunk_text)
    if not item.evidence:
        return contains_answer(chunk_text, item.answers)
    evidence = [normalize_answer(e) for e in item.evidence]
    if any(contains_phrase(text, e) for e in evidence):
        return True
    return any(contains_phrase(e, text) for e in evidence) and contains_answer(chunk_text, item.answers)


def first_hit_rank(chunk_texts: Sequence[str], item: QAItem) -> int | None:
    """The 1-based rank of the first hit in a ranking, or None when nothing in it is a hit."""
    return next((rank for rank, text in enumerate(chunk_texts, start=1) if is_hit(text, item)), None)


def recall_at(ranks: Sequence[int | None], k: int) -> float | None:
    """Share of questions whose first hit is in the top k (None for no questions)."""
    return sum(r is not None and r <= k for r in ranks) / len(ranks) if ranks else None


def mrr_at(ranks: Sequence[int | None], k: int) -> float | None:
    """Mean reciprocal rank of the first hit, counting hits below k as zero."""
    return sum(1 / r for r in ranks if r is not None and r <= k) / len(ranks) if ranks else None


def share(flags: Sequence[bool]) -> float | None:
    """The fraction of true flags, or None when there are none to count."""
    return sum(flags) / len(flags) if flags else None


def mean(values: Sequence[float]) -> float | None:
    """The mean, or None for no values."""
    return sum(values) / len(values) if values else None


def ratio(value: float | None, base: float | None) -> float | None:
    """The ratio value ÷ base, or None when either is missing or base is zero."""
    return value / base if value is not None and base else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation), or None for no values."""
    return float(np.percentile(values, q)) if values else None


def answer_words(text: str) -> int:
    """How many words an answer has; [n] citation markers are not words."""
    return len(strip_markers(text).split())


def first_answer_rank(chunk_texts: Sequence[str], answers: Sequence[str]) -> int | None:
    """The 1-based rank of the first chunk that contains a gold answer, or None."""
    return next((rank for rank, text in enumerate(chunk_texts, start=1) if contains_answer(text, answers)), None)


def short_answer_scores(short_answer: str | None, answers: Sequence[str]) -> tuple[float, float]:
    """(exact match, token F1) of a short answer against the gold answers; no short answer scores (0, 0)."""
    if short_answer is None:
        return 0.0, 0.0
    norm = normalize_answer(short_answer)
    return float(any(norm == normalize_answer(a) for a in answers)), best_f1(short_answer, answers)


def summarize(per_question: Sequence[dict[str, Any]], retriever: str, *, with_answers: bool) -> dict[str, Any]:
    """The metrics object for one retriever over per-question results (see evals.runner.score_question).

    Rows without answers (a retriever the assistant does not answer with) get None for the answer metrics,
    and their latency is that retriever's retrieval time instead of the whole `ask`.
    """
    answerable = [q for q in per_question if q["answerable"]]
    unanswerable = [q for q in per_question if not q["answerable"]]
    # Questions that ask for a short answer (a name, number, date, place) carry short_em/short_f1; others None.
    asks_short = [q for q in answerable if q.get("short_f1") is not None]
    ranks = [q["hit_rank"][retriever] for q in answerable]
    answer_ranks = [q["answer_rank"][retriever] for q in answerable]
    ceiling = [q["in_collection"] for q in answerable if q.get("in_collection") is not None]
    metrics: dict[str, Any] = {
        "recall@1": recall_at(ranks, 1),
        "recall@5": recall_at(ranks, 5),
        "recall@10": recall_at(ranks, 10),
        "mrr@10": mrr_at(ranks, 10),
        "answer_recall@1": recall_at(answer_ranks, 1),
        "answer_recall@5": recall_at(answer_ranks, 5),
        # None when the run did not read the collection's chunks (hand-made rows).
        "answer_ceiling": share(ceiling) if len(ceiling) == len(answerable) else None,
    }
    if with_answers:
        replied = [q for q in answerable if not q["abstained"]]
        answered = [q for q in answerable if q["status"] == "answered"]
        citations = sum(q["citations"] for q in per_question)
        latencies = [q["latency_ms"] for q in per_question]
        refusal = share([q["abstained"] for q in answerable])
        metrics |= {
            # Answered or uncertain: either way the user reads the text, so the gold answer counts if it is there.
            "answer_accuracy": share([q["correct"] for q in answerable]),
            "answer_f1": mean([q["f1"] for q in answerable]),
            "answer_words": mean([q["words"] for q in replied]),
            "short_answer_em": mean([q["short_em"] for q in asks_short]),
            "short_answer_f1": mean([q["short_f1"] for q in asks_short]),
            "short_answer_rate": share([q["short_answer"] is not None for q in asks_short]),
            "citation_validity": sum(q["valid_citations"] for q in per_question) / citations if citations else None,
            "citation_support": share([q["supported"] for q in replied]),
            "abstention_recall": share([q["abstained"] for q in unanswerable]),
            "false_abstention_rate": refusal,
            "refusal_rate": refusal,
            "answered_share": share([q["status"] == "answered" for q in answerable]),
            "answered_precision": share([q["correct"] for q in answered]),
            "confident_error_rate": share([q["status"] == "answered" and not q["correct"] for q in answerable]),
            "confident_unanswerable_rate": share([q["status"] == "answered" for q in unanswerable]),
            "uncertain_unanswerable_rate": share([q["status"] == "uncertain" for q in unanswerable]),
        }
    else:
        latencies = [q["retrieve_ms"][retriever] for q in per_question]
        metrics |= dict.fromkeys(ANSWER_KEYS)
    metrics |= {
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
        "n": len(per_question),
    }
    return {key: metrics[key] for key in METRIC_KEYS}


def lead_answer(chunk_text: str, sentences: int) -> str:
    """The first `sentences` sentences of a chunk, as the lead baseline answers."""
    spans = sentence_spans(chunk_text)[:sentences]
    return chunk_text[spans[0][0] : spans[-1][1]] if spans else ""


def lead_name(sentences: int) -> str:
    """The row name of a lead baseline."""
    return f"lead-{sentences}"


def summarize_lead(per_question: Sequence[dict[str, Any]], sentences: int) -> dict[str, Any]:
    """A lead baseline's row: its gold-in-answer rate, F1 and length over the answerable questions.

    It always answers, so the abstention, citation and status metrics do not apply and stay None.
    """
    leads = [q["lead"][lead_name(sentences)] for q in per_question if q["answerable"]]
    metrics = dict.fromkeys(METRIC_KEYS) | {
        "answer_accuracy": share([lead["correct"] for lead in leads]),
        "answer_f1": mean([lead["f1"] for lead in leads]),
        "answer_words": mean([lead["words"] for lead in leads]),
        "n": len(per_question),
    }
    return metrics


def confidences(per_question: Sequence[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """The extractive confidence of each (answerable, unanswerable) question that has one."""
    scored = [q for q in per_question if q.get("confidence") is not None]
    return (
        [float(q["confidence"]) for q in scored if q["answerable"]],
        [float(q["confidence"]) for q in scored if not q["answerable"]],
    )


def abstention_auc(per_question: Sequence[dict[str, Any]]) -> float | None:
    """How well confidence alone separates the two kinds of question, whatever the threshold.

    The chance that a random unanswerable question scores below a random answerable one (ties count half):
    0.5 is no better than a coin, 1.0 means some threshold abstains on exactly the unanswerable ones.
    None without both kinds.
    """
    answerable, unanswerable = confidences(per_question)
    if not answerable or not unanswerable:
        return None
    high = np.asarray(answerable)[None, :]
    low = np.asarray(unanswerable)[:, None]
    return float(np.mean((low < high) + 0.5 * (low == high)))


def abstention_tradeoff(per_question: Sequence[dict[str, Any]], thresholds: Sequence[float]) -> list[dict[str, float]]:
    """For each threshold: the abstention recall and false abstention rate that confidence < threshold would give."""
    answerable, unanswerable = confidences(per_question)
    if not answerable or not unanswerable:
        return []
    return [
        {
            "threshold": t,
            "abstention_recall": float(np.mean(np.asarray(unanswerable) < t)),
            "false_abstention_rate": float(np.mean(np.asarray(answerable) < t)),
        }
        for t in thresholds
    ]


def recall_curve(per_question: Sequence[dict[str, Any]], retriever: str, depth: int = RANK_DEPTH) -> list[float]:
    """recall@k for k = 1..depth over the answerable questions."""
    ranks = [q["hit_rank"][retriever] for q in per_question if q["answerable"]]
    return [recall_at(ranks, k) or 0.0 for k in range(1, depth + 1)]
