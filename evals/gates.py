"""Regression gates for the seed QA set: measured values minus a small margin (see BENCHMARKS.md, eval)."""

from __future__ import annotations

from typing import Any

SEED_DATASET = "evals/data/seed_qa.jsonl"

# Each gate is (direction, bound). Measured with `rag eval evals/data/seed_qa.jsonl` over corpus/ (extractive):
# recall@1 0.972, recall@5 1.000, mrr@10 0.986, answer_accuracy 0.944, answer_f1 0.272, citation_validity 1.000,
# citation_support 1.000, abstention_recall 1.000 (9/9), false_abstention_rate 0.056 (2/36).
# The margins allow about one question's worth of drift (1/36 = 0.028 answerable, 1/9 = 0.111 unanswerable).
SEED_GATES: dict[str, tuple[str, float]] = {
    "recall@5": (">=", 0.97),
    "mrr@10": (">=", 0.95),
    "answer_accuracy": (">=", 0.91),
    "answer_f1": (">=", 0.24),
    "citation_validity": (">=", 1.0),
    "citation_support": (">=", 0.97),
    "abstention_recall": (">=", 0.88),
    "false_abstention_rate": ("<=", 0.09),
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
FIXTURE_EXPECTED: dict[str, float | None] = {}
