"""Fit rag.short_answer.WEIGHTS on dev data: SQuAD 2.0 dev and the NQ-open dev half, given the gold sentence.

`python -m evals.fit short_answer [--squad PATH] [--nq PATH] [--seed S] [--nq-home HOME [--withhold W]]`

Each question that asks for a short answer (rag.short_answer.asks_for_short_answer) becomes the gold sentence
(the one holding the answer) and its neighbours, as the answer step would cite them. Every candidate phrase of
those sentences is labelled 1 when it is the best-F1 candidate of its question with F1 >= 0.5. A logistic
regression over the phrase features is fitted on one half of the questions and checked on the other; the printed
Weights(...) is what rag/short_answer.py holds. NQ-open test questions are never fitted on; only
`--nq-home ... --nq-test-sample N` reads them, to report.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from evals.metrics import best_f1, contains_answer
from evals.nq import load_nq_open
from rag.settings import Settings
from rag.short_answer import FEATURES, WEIGHTS, Kind, Weights, asks_for_short_answer, probability, score_candidates
from rag.text import sentence_spans
from rag.types import Chunk

DATA = Path("../shared/data")  # beside the repository, as every eval reads it
SQUAD = DATA / "squad2-dev" / "dev-v2.0.json"
NQ = DATA / "nq-open" / "nq-open-oracle.jsonl.gz"


@dataclass(frozen=True)
class Example:
    """A question, its gold answers, and the sentences around the gold one (gold first)."""

    question: str
    answers: tuple[str, ...]
    chunk: Chunk
    gold: tuple[int, int]
    neighbours: tuple[tuple[int, int], ...]
    origin: str

    def sentences(self, *, with_neighbours: bool) -> list[tuple[int, Chunk, int, int]]:
        """(n, chunk, start, end) of the sentences handed to the short-answer step."""
        spans = sorted([self.gold, *self.neighbours]) if with_neighbours else [self.gold]
        return [(n, self.chunk, a, b) for n, (a, b) in enumerate(spans, start=1)]


def _example(
    question: str, answers: Sequence[str], title: str, text: str, at: int | None, origin: str
) -> Example | None:
    """The example for a passage; the gold sentence holds character `at`, or else the first that holds an answer."""
    spans = sentence_spans(text)
    for i, (a, b) in enumerate(spans):
        if (a <= at < b) if at is not None else contains_answer(text[a:b], answers):
            chunk = Chunk(id=origin, source=origin, title=title, start=0, end=len(text), text=text)
            near = tuple(spans[j] for j in (i - 1, i + 1) if 0 <= j < len(spans))
            return Example(question, tuple(answers), chunk, (a, b), near, origin)
    return None


def squad_examples(path: Path) -> Iterator[Example]:
    """Answerable SQuAD 2.0 dev questions that ask for a short answer."""
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                if qa.get("is_impossible") or not asks_for_short_answer(qa["question"]):
                    continue
                answers = [a["text"] for a in qa["answers"]]
                at = qa["answers"][0]["answer_start"]
                example = _example(qa["question"], answers, article["title"], para["context"], at, "squad")
                if example:
                    yield example


def nq_examples(path: Path, *, seed: int = 0) -> Iterator[Example]:
    """NQ-open dev-half questions that ask for a short answer, with their gold passage's answer sentence."""
    nq = load_nq_open(path, split="dev", withhold=0.0, seed=seed)
    titles = {p.text: p.title for p in nq.passages}  # indexed as each passage's title, which the chunks carry
    for item in nq.items:
        if asks_for_short_answer(item.question):
            text = item.evidence[0]
            example = _example(item.question, item.answers, titles.get(text, ""), text, None, "nq")
            if example:
                yield example


def kind_of(example: Example) -> Kind:
    """The kind of short answer the example's question asks for."""
    kind = asks_for_short_answer(example.question)
    assert kind is not None
    return kind


def candidate_rows(example: Example, *, with_neighbours: bool) -> tuple[list[list[float]], list[int], list[float]]:
    """Feature rows, labels and F1s of every candidate phrase of one example."""
    scored = score_candidates(example.question, kind_of(example), example.sentences(with_neighbours=with_neighbours))
    f1s = [best_f1(s.chunk.text[s.phrase.start : s.phrase.end], example.answers) for s in scored]
    top = max(f1s, default=0.0)
    labels = [int(f >= 0.5 and f == top) for f in f1s]
    return [[s.features[name] for name in FEATURES] for s in scored], labels, f1s


def evaluate(examples: Sequence[Example], weights: dict[Kind, Weights], *, with_neighbours: bool) -> dict[str, float]:
    """Short-answer F1 and EM of the best-scored phrase (0 when there is none), over the examples."""
    f1 = em = 0.0
    for ex in examples:
        rows, _, f1s = candidate_rows(ex, with_neighbours=with_neighbours)
        if rows:
            scores = [probability(dict(zip(FEATURES, row, strict=True)), weights[kind_of(ex)]) for row in rows]
            best = max(range(len(rows)), key=scores.__getitem__)
            f1 += f1s[best]
            em += float(f1s[best] == 1.0)
    n = max(len(examples), 1)
    return {"f1": round(f1 / n, 3), "em": round(em / n, 3), "questions": len(examples)}


def ceiling(examples: Sequence[Example], *, with_neighbours: bool) -> float:
    """Mean F1 of the best candidate of each example: what a perfect scorer would reach with these rules."""
    total = sum(max(candidate_rows(ex, with_neighbours=with_neighbours)[2], default=0.0) for ex in examples)
    return round(total / max(len(examples), 1), 3)


def fit(examples: Sequence[Example], *, c: float) -> dict[Kind, Weights]:
    """One logistic regression per question kind over the candidates of the examples.

    Each example counts twice, given its gold sentence alone and with its neighbours, so the model also learns
    to pick the sentence.
    """
    from sklearn.linear_model import LogisticRegression

    out = {}
    for kind in WEIGHTS:
        x, y = [], []
        for ex in examples:
            if kind_of(ex) == kind:
                for with_neighbours in (False, True):
                    rows, labels, _ = candidate_rows(ex, with_neighbours=with_neighbours)
                    x += rows
                    y += labels
        model = LogisticRegression(C=c, max_iter=5000).fit(x, y)
        coef = dict(zip(FEATURES, (round(float(w), 3) for w in model.coef_[0]), strict=True))
        out[kind] = Weights(bias=round(float(model.intercept_[0]), 3), **coef)
        print(f"{kind}: {sum(y)} positive of {len(y)} candidates")
    return out


def replay(nq: Path, home: Path, *, seed: int, withhold: float, split: str, sample: int | None) -> dict[str, float]:
    """Short-answer numbers on an NQ-open half (or a seeded sample of it) from the answer's own chosen sentences.

    Retrieval is `python -m evals.fit answer`'s (cached under RAG_HOME/evals/fit-answer, keyed by the collection's
    revision; home holds the collection); the answer step and the short answer are replayed with this tree's code.
    `f1` is as `rag eval` counts it (0 when no short answer is given); `gold_in_chosen` is the share whose chosen
    sentences hold a gold answer, `f1_given_gold` the F1 over those, and `ceiling_given_gold` their best candidate's F1.
    """
    from evals.fit.answer import MAX_SENTENCES, nq_records
    from rag.answer import AnswerModel, read_evidence
    from rag.short_answer import find_short_answer

    args = argparse.Namespace(nq=nq, nq_withhold=withhold, nq_seed=seed, nq_home=home)
    records = [
        r for r in nq_records(args, split, sample) if r.item.answerable and asks_for_short_answer(r.item.question)
    ]
    model, abstain = AnswerModel(), Settings().abstain_threshold
    f1 = em = held = f1_held = best = 0.0
    for record in records:
        question, answers = record.item.question, record.item.answers
        evidence = read_evidence(question, record.candidates, record.idf, model=model, max_sentences=MAX_SENTENCES)
        if evidence is None or model.relevance_of(evidence.features) < abstain:
            continue
        chosen = sorted(evidence.chosen, key=lambda s: s.doc_span)
        citations = evidence.citations()
        short, _ = find_short_answer(
            question, citations, {s.chunk.id: s.chunk for s in chosen}, likeliest=evidence.likeliest
        )
        score = best_f1(short.text, answers) if short else 0.0
        f1, em = f1 + score, em + float(score == 1.0)
        if contains_answer(" ".join(c.quote for c in citations), answers):
            held += 1
            f1_held += score
            spans = [(c.n, s.chunk, s.local_start, s.local_end) for c, s in zip(citations, chosen, strict=True)]
            scored = score_candidates(question, asks_for_short_answer(question) or "", spans)
            best += max((best_f1(x.chunk.text[x.phrase.start : x.phrase.end], answers) for x in scored), default=0.0)
    n = max(len(records), 1)
    return {
        "questions": len(records),
        "f1": round(f1 / n, 3),
        "em": round(em / n, 3),
        "gold_in_chosen": round(held / n, 3),
        "f1_given_gold": round(f1_held / max(held, 1), 3),
        "ceiling_given_gold": round(best / max(held, 1), 3),
    }


def main(argv: Sequence[str]) -> None:
    """Fit on half the dev questions, report F1/EM on the other half with the fitted and the current weights."""
    parser = argparse.ArgumentParser(prog="python -m evals.fit short_answer")
    parser.add_argument("--squad", type=Path, default=SQUAD)
    parser.add_argument("--nq", type=Path, default=NQ)
    parser.add_argument("--seed", type=int, default=0, help="Seed of the NQ-open dev/test split.")
    parser.add_argument("--c", type=float, default=1.0, help="Inverse regularisation strength.")
    parser.add_argument("--withhold", type=float, default=0.2, help="--nq-home: the collection's withheld share.")
    parser.add_argument(
        "--nq-home", type=Path, help="Only replay the answer step on the NQ-open dev half indexed in this RAG_HOME."
    )
    parser.add_argument("--nq-test-sample", type=int, help="--nq-home: REPORT on a sample of the test half instead.")
    args = parser.parse_args(argv)
    if args.nq_home:
        split = "test" if args.nq_test_sample else "dev"
        numbers = replay(
            args.nq, args.nq_home, seed=args.seed, withhold=args.withhold, split=split, sample=args.nq_test_sample
        )
        print(f"NQ-open {split} half, chosen sentences: {numbers}")
        return
    squad, nq = list(squad_examples(args.squad)), list(nq_examples(args.nq, seed=args.seed))
    # Fit on even positions, check on odd ones, so the reported numbers are not the fit's own data.
    weights = fit(squad[::2] + nq[::2], c=args.c)
    for name, examples in (("squad", squad[1::2]), ("nq-dev", nq[1::2])):
        for with_neighbours in (False, True):
            setting = "gold sentence + neighbours" if with_neighbours else "gold sentence"
            print(f"{name} ({setting}): ceiling {ceiling(examples, with_neighbours=with_neighbours)}")
            for label, held in (("fitted", weights), ("current", WEIGHTS)):
                print(f"  {label}: {evaluate(examples, held, with_neighbours=with_neighbours)}")
    print("WEIGHTS: dict[Kind, Weights] = {")
    for kind, w in weights.items():
        values = ", ".join(f"{f.name}={getattr(w, f.name)}" for f in fields(Weights))
        print(f'    "{kind}": Weights({values}),')
    print("}")
    print(f"fit on {len(squad[::2])} SQuAD + {len(nq[::2])} NQ-open dev questions")
