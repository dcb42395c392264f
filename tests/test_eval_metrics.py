"""Scoring rules on hand-made values: normalisation, F1, hits, recall and MRR, and the aggregate metrics."""

from __future__ import annotations

import pytest

from evals.dataset import QAItem
from evals.gates import gate_failures
from evals.metrics import (
    METRIC_KEYS,
    AnswerHaystack,
    abstention_auc,
    abstention_tradeoff,
    best_f1,
    contains_answer,
    first_answer_rank,
    first_hit_rank,
    is_hit,
    lead_answer,
    mrr_at,
    normalize_answer,
    recall_at,
    recall_curve,
    short_answer_scores,
    summarize,
    summarize_lead,
    token_f1,
)


def item(answers=("270",), evidence=(), answerable=True) -> QAItem:
    return QAItem(id="q", question="How many?", answers=tuple(answers), answerable=answerable, evidence=tuple(evidence))


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("The  Jomo Kenyatta\nAirport!", "jomo kenyatta airport"),
        ("an apple, a pear", "apple pear"),
        ("over $300 million.", "over 300 million"),
        ("the mission’s efforts", "mission s efforts"),
        ("United Nations-backed", "united nations backed"),
        ("Theatre and anthem", "theatre and anthem"),  # articles only as whole words
        ("", ""),
    ],
)
def test_normalize_answer(raw: str, normalised: str) -> None:
    assert normalize_answer(raw) == normalised


def test_token_f1_squad_examples() -> None:
    assert token_f1("270 officers", "270") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("The 270", "270") == 1.0
    assert token_f1("four hundred", "400") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("a", "270") == 0.0  # nothing left after normalisation on one side


def test_best_f1_takes_the_best_gold_and_ignores_citation_markers() -> None:
    assert best_f1("Friday night [1]", ["night", "Friday night"]) == 1.0
    assert best_f1("anything", []) == 0.0


def test_contains_answer_respects_word_boundaries() -> None:
    assert contains_answer("Kenya deployed 270 additional officers.", ["270"])
    assert not contains_answer("Kenya deployed 2700 officers.", ["270"])
    assert contains_answer("the United Nations-backed mission", ["United Nations"])
    assert not contains_answer("Kenya", ["   "])


def test_hit_when_the_chunk_contains_an_evidence_string() -> None:
    qa = item(answers=["June"], evidence=["an initial contingent of 400 officers sent by Kenya in June"])
    assert is_hit("This latest deployment follows an initial contingent of 400 officers sent by Kenya in June, ...", qa)
    assert not is_hit("Kenya sent officers in June.", qa)  # the answer alone is not the evidence


def test_hit_for_a_chunk_inside_long_evidence_only_with_a_gold_answer() -> None:
    paragraph = "Normandy is a region in France. It was named after the Norsemen. Rollo was its first ruler."
    qa = item(answers=["Rollo"], evidence=[paragraph])
    assert is_hit("It was named after the Norsemen. Rollo was its first ruler.", qa)  # tail of the paragraph
    assert not is_hit("Normandy is a region in France.", qa)  # inside the paragraph, but no answer
    assert not is_hit("Rollo was a Viking.", qa)  # the answer, but from another text


def test_hit_without_evidence_uses_the_answers() -> None:
    assert is_hit("It sent 270 officers.", item(answers=["270"]))
    assert not is_hit("It sent officers.", item(answers=["270"]))


def test_first_hit_rank_recall_and_mrr_on_hand_made_rankings() -> None:
    qa = item(answers=["270"])
    assert first_hit_rank(["no", "nothing", "270 officers"], qa) == 3
    assert first_hit_rank(["no"], qa) is None
    ranks = [1, 3, None, 12]
    assert recall_at(ranks, 1) == 0.25
    assert recall_at(ranks, 5) == 0.5
    assert recall_at(ranks, 20) == 0.75
    assert mrr_at(ranks, 10) == pytest.approx((1 + 1 / 3) / 4)
    assert recall_at([], 5) is None


def row(answerable: bool, **fields) -> dict:
    base = {
        "answerable": answerable,
        "abstained": False,
        "correct": True if answerable else None,
        "f1": 1.0 if answerable else None,
        "words": 10,
        "short_answer": None,
        "short_em": 0.0 if answerable else None,
        "short_f1": 0.0 if answerable else None,
        "citations": 1,
        "valid_citations": 1,
        "supported": True if answerable else None,
        "hit_rank": {"hybrid": 1 if answerable else None, "bm25": 2 if answerable else None},
        "answer_rank": {"hybrid": 1 if answerable else None, "bm25": 2 if answerable else None},
        "in_collection": True if answerable else None,
        "lead": None,
        "latency_ms": 100.0,
        "retrieve_ms": {"hybrid": 5.0, "bm25": 1.0},
    }
    merged = base | fields
    # Today's two statuses follow from `abstained` unless a row says otherwise.
    merged.setdefault("status", "abstained" if merged["abstained"] else "answered")
    if merged["abstained"]:
        merged["words"] = None
    return merged


def test_summarize_counts_each_metric_over_the_right_questions() -> None:
    rows = [
        row(True),
        row(True, abstained=True, correct=False, f1=0.0, citations=0, valid_citations=0, supported=None),
        row(True, correct=False, f1=0.5, valid_citations=0, supported=False, hit_rank={"hybrid": 7, "bm25": None}),
        row(False, abstained=True, citations=0, valid_citations=0, latency_ms=300.0),
        row(False, citations=2, valid_citations=2),
    ]
    m = summarize(rows, "hybrid", with_answers=True)
    assert list(m) == list(METRIC_KEYS)
    assert m["recall@1"] == pytest.approx(2 / 3)
    assert m["recall@5"] == pytest.approx(2 / 3)
    assert m["recall@10"] == 1.0
    assert m["mrr@10"] == pytest.approx((1 + 1 + 1 / 7) / 3)
    assert m["answer_accuracy"] == pytest.approx(1 / 3)
    assert m["answer_f1"] == pytest.approx(0.5)
    assert m["citation_validity"] == pytest.approx(3 / 4)
    assert m["citation_support"] == pytest.approx(1 / 2)  # over answerable questions it answered
    assert m["abstention_recall"] == 0.5
    assert m["false_abstention_rate"] == pytest.approx(1 / 3)
    assert m["latency_p50_ms"] == 100.0
    assert m["n"] == 5


def test_summarize_a_ranking_only_row_has_no_answer_metrics() -> None:
    rows = [row(True), row(True, hit_rank={"hybrid": 1, "bm25": None}), row(False)]
    m = summarize(rows, "bm25", with_answers=False)
    assert m["recall@1"] == 0.0 and m["recall@5"] == 0.5 and m["mrr@10"] == 0.25
    assert m["answer_accuracy"] is None and m["abstention_recall"] is None
    assert m["latency_p50_ms"] == 1.0  # the retriever's own ranking time
    assert recall_curve(rows, "bm25", depth=3) == [0.0, 0.5, 0.5]


def test_short_answer_scores_exact_match_f1_and_a_missing_one() -> None:
    assert short_answer_scores("the 1901", ["1901", "in 1901"]) == (1.0, 1.0)
    em, f1 = short_answer_scores("Wilhelm Röntgen", ["Wilhelm Conrad Röntgen"])
    assert em == 0.0 and f1 == pytest.approx(0.8)  # precision 2/2, recall 2/3
    assert short_answer_scores(None, ["1901"]) == (0.0, 0.0)


def test_first_answer_rank_and_the_haystack_keep_word_and_text_boundaries() -> None:
    assert first_answer_rank(["in 19010", "awarded in 1901.", "1901"], ["1901"]) == 2
    assert first_answer_rank(["nothing"], ["1901"]) is None
    haystack = AnswerHaystack(["He moved to New", "York City later.", "The Nobel Prize in Physics"])
    assert haystack.contains(["nobel prize"]) and haystack.contains(["zzz", "york city"])
    assert not haystack.contains(["new york"])  # across two texts is not in either
    assert not haystack.contains(["Nobel Prizes"]) and not haystack.contains([])


def graded_rows() -> list[dict]:
    """Four answerable and four unanswerable questions, one of each status outcome."""
    em_a, f1_a = short_answer_scores("Wilhelm Röntgen", ["Wilhelm Conrad Röntgen"])
    ranks = lambda hybrid, bm25: {"hybrid": hybrid, "bm25": bm25}  # noqa: E731
    return [
        row(True, short_answer="Wilhelm Röntgen", short_em=em_a, short_f1=f1_a, answer_rank=ranks(1, None)),
        row(True, status="uncertain", words=30, answer_rank=ranks(4, 1)),
        row(  # wrong, but with the right short answer
            True,
            correct=False,
            f1=0.0,
            words=20,
            short_answer="1901",
            short_em=1.0,
            short_f1=1.0,
            answer_rank=ranks(None, None),
            in_collection=False,
        ),
        row(True, abstained=True, correct=False, f1=0.0, answer_rank=ranks(7, 3)),
        row(False),
        row(False, status="uncertain"),
        row(False, abstained=True),
        row(False, abstained=True),
    ]


def test_graded_status_and_short_answer_metrics_count_over_the_right_questions() -> None:
    m = summarize(graded_rows(), "hybrid", with_answers=True)
    assert m["answer_accuracy"] == 0.5  # answered or uncertain, with the gold answer in the text
    assert m["answer_words"] == 20.0  # (10 + 30 + 20) / 3: the abstention has no words
    assert m["confident_error_rate"] == 0.25
    assert m["refusal_rate"] == m["false_abstention_rate"] == 0.25
    assert m["answered_share"] == 0.5
    assert m["answered_precision"] == 0.5
    assert m["confident_unanswerable_rate"] == 0.25
    assert m["uncertain_unanswerable_rate"] == 0.25
    assert m["abstention_recall"] == 0.5
    assert m["short_answer_em"] == 0.25
    assert m["short_answer_f1"] == pytest.approx((0.8 + 1.0) / 4)
    assert m["short_answer_rate"] == 0.5
    assert m["answer_recall@1"] == 0.25 and m["answer_recall@5"] == 0.5
    assert m["answer_ceiling"] == 0.75


def test_answer_recall_and_the_ceiling_fill_ranking_only_rows_too() -> None:
    m = summarize(graded_rows(), "bm25", with_answers=False)
    assert m["answer_recall@1"] == 0.25 and m["answer_recall@5"] == 0.5
    assert m["answer_ceiling"] == 0.75 and m["answer_words"] is None and m["refusal_rate"] is None
    # Rows that were never checked against the collection have no ceiling.
    assert summarize([row(True, in_collection=None)], "hybrid", with_answers=True)["answer_ceiling"] is None


def test_lead_answer_takes_the_first_sentences() -> None:
    text = "The first prize went to Röntgen in 1901. Bardeen won twice. Curie won two prizes. Bragg was 25."
    assert lead_answer(text, 1) == "The first prize went to Röntgen in 1901."
    assert lead_answer(text, 2) == "The first prize went to Röntgen in 1901. Bardeen won twice."
    assert lead_answer("One sentence only", 3) == "One sentence only"
    assert lead_answer("", 2) == ""


def lead(correct: bool | None, words: int, f1: float | None = None) -> dict:
    return {"correct": correct, "f1": float(correct) if f1 is None and correct is not None else f1, "words": words}


def test_lead_rows_and_ratios_against_ours() -> None:
    from evals.runner import EvalRun

    rows = graded_rows()
    leads = [
        {"lead-1": lead(False, 8), "lead-2": lead(True, 20), "lead-3": lead(True, 35)},
        {"lead-1": lead(True, 12), "lead-2": lead(True, 30), "lead-3": lead(True, 45)},
        {"lead-1": lead(False, 10), "lead-2": lead(False, 20), "lead-3": lead(True, 30)},
        {"lead-1": lead(False, 10), "lead-2": lead(False, 10), "lead-3": lead(False, 10)},
    ] + [{f"lead-{k}": lead(None, 5 * k) for k in (1, 2, 3)}] * 4
    rows = [r | {"lead": leading} for r, leading in zip(rows, leads, strict=True)]
    lead_2 = summarize_lead(rows, 2)
    assert list(lead_2) == list(METRIC_KEYS)
    assert lead_2["answer_accuracy"] == 0.5 and lead_2["answer_words"] == 20.0 and lead_2["n"] == 8
    assert lead_2["answer_f1"] == 0.5 and lead_2["refusal_rate"] is None and lead_2["recall@5"] is None
    run = EvalRun(config={"retriever": "hybrid", "retrievers": ["hybrid", "bm25"]}, per_question=rows)
    assert list(run.baselines()) == ["lead-1", "lead-2", "lead-3"]
    assert run.baselines()["lead-3"]["answer_accuracy"] == 0.75 and run.baselines()["lead-1"]["answer_words"] == 10
    ratios = run.baseline_ratios()
    assert ratios["lead-1"] == {"answer_accuracy": 2.0, "answer_words": 2.0}
    assert ratios["lead-2"] == {"answer_accuracy": 1.0, "answer_words": 1.0}
    assert run.ceiling() == {
        "answer_ceiling": 0.75,
        "answer_recall@5_of_ceiling": pytest.approx(0.5 / 0.75),
        "answer_accuracy_of_ceiling": pytest.approx(0.5 / 0.75),
    }
    # Lead rows belong to --compare runs only.
    assert EvalRun(config={"retriever": "hybrid", "retrievers": ["hybrid"]}, per_question=rows).baselines() == {}


def test_gates_name_each_miss() -> None:
    gates = {"recall@5": (">=", 0.9), "false_abstention_rate": ("<=", 0.1)}
    assert gate_failures({"recall@5": 0.95, "false_abstention_rate": 0.05}, gates) == []
    failed = gate_failures({"recall@5": 0.5, "false_abstention_rate": None}, gates)
    assert failed == ["recall@5 = 0.5 (gate >= 0.9)", "false_abstention_rate = None (gate <= 0.1)"]


def test_worst_failures_mix_wrong_answers_and_answered_unanswerables() -> None:
    from evals.report import WORST_FAILURES, failures
    from evals.runner import EvalRun

    wrong = [row(True, id=f"w{i}", correct=False, f1=i / 10) for i in range(8)]
    answered = [row(False, id=f"u{i}") for i in range(8)]
    rows = [row(True, id="ok"), *wrong, *answered, row(False, id="abstained", abstained=True)]
    worst = failures(EvalRun(config={"retriever": "hybrid"}, per_question=rows))
    assert [q["id"] for q in worst] == ["w0", "w1", "w2", "w3", "w4", "u0", "u1", "u2", "u3", "u4"]
    only_wrong = failures(EvalRun(config={"retriever": "hybrid"}, per_question=wrong))
    assert len(only_wrong) == min(WORST_FAILURES, len(wrong))


def test_abstention_auc_and_tradeoff_come_from_confidence_alone() -> None:
    rows = [
        row(True, confidence=0.8),
        row(True, confidence=0.5),
        row(True, confidence=0.3),
        row(False, confidence=0.3),
        row(False, confidence=0.1),
        row(True, confidence=None),  # a corpus question or an LLM answer: no extractive confidence
    ]
    # Unanswerable 0.3 ties answerable 0.3 (half) and is below the other two; 0.1 is below all three.
    assert abstention_auc(rows) == pytest.approx((2.5 + 3) / 6)
    assert abstention_tradeoff(rows, [0.2, 0.4]) == [
        {"threshold": 0.2, "abstention_recall": 0.5, "false_abstention_rate": 0.0},
        {"threshold": 0.4, "abstention_recall": 1.0, "false_abstention_rate": pytest.approx(1 / 3)},
    ]
    only_answerable = [r for r in rows if r["answerable"]]
    assert abstention_auc(only_answerable) is None and abstention_tradeoff(only_answerable, [0.4]) == []


def test_short_answer_metrics_count_only_questions_that_ask_for_one() -> None:
    rows = graded_rows()
    why = row(True, correct=True, short_em=None, short_f1=None)  # "why ...?" asks for no short answer
    with_why = summarize([*rows, why], "hybrid", with_answers=True)
    alone = summarize(rows, "hybrid", with_answers=True)
    for key in ("short_answer_em", "short_answer_f1", "short_answer_rate"):
        assert with_why[key] == alone[key], key
    assert with_why["answer_accuracy"] != alone["answer_accuracy"]
