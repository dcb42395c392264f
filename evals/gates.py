"""Regression gates for the seed QA set: measured values minus a small margin (see BENCHMARKS.md, eval)."""

from __future__ import annotations

from typing import Any

SEED_DATASET = "evals/data/seed_qa.jsonl"

# Each gate is (direction, bound). Measured with `rag eval evals/data/seed_qa.jsonl` over corpus/ (extractive,
# graded answers, 2026-12-02, after the second issue-11 refit: relevance also reads whether the question's terms are
# anywhere in the retrieved chunks; 60-word budget, word price 0.5): recall@5 1.000, mrr@10 1.000, answer_accuracy
# 0.944 (34/36 answered or uncertain with the gold answer; 32/36 after the first refit, 36/36 before it), answer_f1
# 0.186, citation_validity 1.000, citation_support 1.000, refusal_rate 0.000, answered_share 0.306 (11/36),
# answered_precision 1.000, confident_error_rate 0.000, confident_unanswerable_rate 0.000, abstention_recall 0.556
# (5/9, was 2/9; the other 4 near-misses are `uncertain`). The seed set is a regression check, never a tuning
# target: the answer step is fitted on NQ-open dev, SQuAD and RealTimeQA (BENCHMARKS.md, "Answer calibration").
# Third refit (the budget's word count, 60 words at 0.45, answer threshold 0.835): answered_share 0.306 -> 0.389
# (14/36, all holding gold), answer_f1 0.191; every other value as above. Fourth refit (the sentence model reads
# `predicate`, answer threshold 0.8): answered_share 0.389 -> 0.556 (20/36, all holding gold), answer_f1 0.202.
# Fifth refit (the sentence model ranked as a list; thresholds 0.655 / 0.78): answer_accuracy 0.944 -> 0.972 (35/36),
# answered_share 0.556 -> 0.639 (23/36, all holding gold), answer_f1 0.194. The
# margins allow about one question's worth of drift (1/36 = 0.028 answerable, 1/9 = 0.111 unanswerable).
SEED_GATES: dict[str, tuple[str, float]] = {
    "recall@5": (">=", 0.97),
    "mrr@10": (">=", 0.97),
    "answer_accuracy": (">=", 0.94),
    "answer_f1": (">=", 0.135),
    "citation_validity": (">=", 1.0),
    "citation_support": (">=", 0.97),
    "refusal_rate": ("<=", 0.03),
    "answered_share": (">=", 0.61),
    "answered_precision": (">=", 0.97),
    "confident_unanswerable_rate": ("<=", 0.0),
    "confident_error_rate": ("<=", 0.03),
    "abstention_recall": (">=", 0.44),
}


def gate_failures(metrics: dict[str, Any], gates: dict[str, tuple[str, float]] = SEED_GATES) -> list[str]:
    """One line per gate the metrics miss (a missing metric fails its gate)."""
    failed = []
    for key, (direction, bound) in gates.items():
        value = metrics.get(key)
        ok = value is not None and (value >= bound if direction == ">=" else value <= bound)
        if not ok:
            failed.append(f"{key} = {value} (gate {direction} {bound})")
    return failed


# Exact values of `rag eval tests/fixtures/wiki/qa.jsonl --compare` over tests/fixtures/wiki/docs (extractive,
# defaults), rounded to 3 decimals; tests/test_fixture_gates.py holds them. Update on purpose, never to make a
# failing test pass without knowing why the number moved.
# 2026-12-02 (issue-11 refit): answered_share 0.0 -> 0.45 (18/40, all holding gold), short_answer_f1 0.419 -> 0.491,
# answer_words 44.95 -> 43.925 (the knapsack choice), and confident_unanswerable_rate 0.0 -> 0.5: 8 of the 16
# unanswerable questions, all SQuAD 2.0's adversarial ones (written against their own paragraph, with its words),
# are now `answered`. The confidence model no longer learns from that kind: it had taught it to distrust word
# overlap, which kept every natural-question answer `uncertain`. A known cost; see BENCHMARKS.md, "Answer
# calibration".
# 2026-12-02 (short-answer second refit, rag/short_answer.py): short_answer_f1 0.491 -> 0.592; and through the
# short-answer scores the answer model reads as features (AnswerModel not refit): answer_accuracy 0.9 -> 0.925,
# answered_share 0.45 -> 0.425 (17/40), confident_unanswerable_rate 0.5 -> 0.375 (6 of 16), answer_words 43.925 ->
# 44.175.
# 2026-12-02 (second answer refit: relevance over cosine, re-rank, `found`, `rarest`; 60-word budget, price 0.5):
# abstention_recall 0.0 -> 0.062 (1 of 16), refusal_rate 0.0 -> 0.025 (1 of 40), answer_accuracy 0.925 -> 0.9,
# answer_words 44.175 -> 40.769, short_answer_f1 0.592 -> 0.565.
# 2026-12-02 (third answer refit: the word budget chosen with the uncertain line counted at the share of answers that
# show it; 60 words at 0.45, answer threshold 0.85 -> 0.835): answered_share 0.425 -> 0.45 (18/40), answer_words
# 40.769 -> 42.385, confident_unanswerable_rate 0.375 -> 0.438 (7 of 16, one more SQuAD adversarial question).
# 2026-12-02 (fourth answer refit: the sentence model reads `predicate`; 90 words at 0.45, answer threshold 0.835 ->
# 0.8): answer_accuracy 0.9 -> 0.925, answered_share 0.45 -> 0.6 (24/40, all holding gold), short_answer_f1 0.565 ->
# 0.61, answer_words 42.385 -> 42.949, confident_unanswerable_rate 0.438 -> 0.562 (9 of 16, all SQuAD adversarial).
# 2026-12-02 (fifth answer refit: the sentence model ranked as a list, then calibrated; 60 words at 0.35, thresholds
# 0.655 / 0.78): answer_accuracy 0.925 -> 0.9, answered_share 0.6 -> 0.675 (27/40, all holding gold),
# short_answer_f1 0.61 -> 0.565, answer_words 42.949 -> 41.359, confident_unanswerable_rate 0.562 -> 0.688 (11 of 16,
# all SQuAD adversarial: written with their paragraph's words, the kind the fit leaves out of the thresholds).
# 2026-12-02 (relevance also reads best_logit; abstain threshold 0.64): abstention_recall 0.062 -> 0.0 (the one
# abstained SQuAD-adversarial question is now `answered`), confident_unanswerable_rate 0.688 -> 0.75 (12 of 16),
# answer_words 41.359 -> 41.179.
# 2026-12-02 (the short answer looks first in the likeliest cited sentence): short_answer_f1 0.565 -> 0.61.
FIXTURE_EXPECTED: dict[str, float | None] = {
    "recall@1": 0.875,
    "recall@5": 1.0,
    "mrr@10": 0.931,
    "answer_recall@1": 0.925,
    "answer_recall@5": 1.0,
    "answer_accuracy": 0.9,
    "answer_words": 41.179,
    "short_answer_f1": 0.61,
    "citation_validity": 1.0,
    "refusal_rate": 0.025,
    "answered_share": 0.675,
    "confident_error_rate": 0.0,
    "confident_unanswerable_rate": 0.75,
    "abstention_recall": 0.0,
}
# Metrics that differ between CPUs, and by how much they may: the embedding kernels round differently (an AMD EPYC
# host gives answer_words 40.821 against 41.179 elsewhere, one answer's sentence choice, every other metric equal).
FIXTURE_TOLERANCE: dict[str, float] = {"answer_words": 0.5}
