"""`python -m evals.fit retrieval`: answer recall on news, SQuAD and NQ-open; refits RerankWeights.

Each question's candidates are fused and scored once (rag.retrieve.HybridSearch.rerank_features), so every weight
of the grid re-ranks the same candidates. The fit uses dev data only: the first half of the RealTimeQA weeks and a
SQuAD 2.0 sample of another seed than the benchmark's (seed 0); the report shows the other half of the weeks and
the seed-0 sample as the held-out check, with LangChain's ensemble ranking the same questions.

    RAG_HOME=... python -m evals.fit retrieval --rtqa ../shared/data/realtimeqa-2022/rtqa.jsonl
        --squad ../shared/data/squad2-dev/dev-v2.0.json [--nq nq-dev.jsonl --nq-home HOME] [--fit]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.dataset import QAItem, load_jsonl, load_squad2
from evals.metrics import contains_answer, contains_phrase, is_hit, mrr_at, normalize_answer, recall_at
from rag.retrieve import Features, RerankWeights, fuse
from rag.settings import Settings
from rag.types import Chunk

# The grid around the last fit; bm25 stays 1 because only the ratios order the candidates.
SENTENCE_GRID = (0.0, 0.5, 1.0, 1.65, 2.5)
JOINT_GRID = (0.0, 0.3, 0.6, 1.0, 1.5, 2.5)
KS = (1, 5, 10)
BASELINE_DEPTH = 10

Gold = Callable[[Chunk, QAItem], bool]


@dataclass
class Scored:
    """One question's candidates: their re-ranking features, whether each is gold, and the baseline's first hit."""

    item: QAItem
    features: list[Features]
    gold: list[bool]
    fused_hit: int | None
    baseline_hit: int | None


def answer_gold(chunk: Chunk, item: QAItem) -> bool:
    """News: any chunk that holds a gold answer counts (many outlets tell the same story)."""
    return contains_answer(chunk.text, item.answers)


def evidence_gold(chunk: Chunk, item: QAItem) -> bool:
    """SQuAD: the benchmark's hit, the question's own paragraph."""
    return is_hit(chunk.text, item)


def first_hit(flags: Sequence[bool]) -> int | None:
    """1-based rank of the first true flag."""
    return next((rank for rank, flag in enumerate(flags, start=1) if flag), None)


def score_questions(settings: Settings, items: Sequence[QAItem], gold: Gold, *, baseline: bool) -> list[Scored]:
    """Fuse and feature every question's candidates exactly as HybridSearch.search does."""
    from evals.baseline import EnsembleBaseline
    from rag.assistant import Assistant

    assistant = Assistant.from_settings(settings)
    assistant.warm_up()
    search = assistant.search
    ensemble = EnsembleBaseline(assistant, depth=BASELINE_DEPTH) if baseline else None
    weights = {"bm25": settings.bm25_weight, "vector": settings.vector_weight}
    out = []
    for item in items:
        rankings = {
            "bm25": search.bm25_ranking(item.question, settings.candidates),
            "vector": search.vector_ranking(item.question, settings.candidates),
        }
        fused = search.candidates(fuse(rankings, weights, rrf_k=settings.rrf_k)[: settings.candidates])
        scored = search.rerank_features(item.question, fused)
        flags = [gold(c.chunk, item) for c, _ in scored]
        baseline_hit = None
        if ensemble is not None:
            baseline_hit = first_hit([gold(c, item) for c in ensemble.search(item.question)])
        out.append(Scored(item, [f for _, f in scored], flags, first_hit(flags), baseline_hit))
    return out


def ranks(scored: Sequence[Scored], weights: RerankWeights) -> list[int | None]:
    """Each question's first gold rank after re-ranking with these weights (stable, like sorted in rerank)."""
    out = []
    for q in scored:
        order = sorted(range(len(q.features)), key=lambda i: -weights.score(q.features[i]))
        out.append(first_hit([q.gold[i] for i in order]))
    return out


def summary(hits: Sequence[int | None]) -> dict[str, float | None]:
    """recall@1/5/10 and MRR@10 of first-hit ranks."""
    return {f"recall@{k}": recall_at(hits, k) for k in KS} | {"mrr@10": mrr_at(hits, 10)}


def report(name: str, scored: Sequence[Scored], weights: RerankWeights, ceiling: float | None) -> dict[str, Any]:
    """The metrics of the hybrid (these weights), the fusion alone and the LangChain ensemble on one question set."""
    row: dict[str, Any] = {"set": name, "n": len(scored), "hybrid": summary(ranks(scored, weights))}
    row["fused, no re-rank"] = summary([q.fused_hit for q in scored])
    if any(q.baseline_hit is not None for q in scored):
        row["langchain-ensemble"] = summary([q.baseline_hit for q in scored])
    if ceiling is not None:
        row["ceiling"] = ceiling
        row["hybrid recall@5 / ceiling"] = (row["hybrid"]["recall@5"] or 0.0) / ceiling if ceiling else None
    return row


def fit(dev: Sequence[Sequence[Scored]]) -> tuple[RerankWeights, float]:
    """The grid point with the best mean recall@5 over the dev sets (MRR@10 breaks ties)."""
    best: tuple[float, RerankWeights] | None = None
    for sentence, joint in itertools.product(SENTENCE_GRID, JOINT_GRID):
        weights = RerankWeights(1.0, sentence, joint)
        value = 0.0
        for scored in dev:
            hits = ranks(scored, weights)
            value += (recall_at(hits, 5) or 0.0) + 0.1 * (mrr_at(hits, 10) or 0.0)
        value /= len(dev)
        if best is None or value > best[0] + 1e-9:
            best = (value, weights)
    assert best is not None
    return best[1], best[0]


def week_halves(items: Sequence[QAItem]) -> tuple[list[QAItem], list[QAItem]]:
    """RealTimeQA ids start with the quiz date: the first half of the weeks, and the rest."""
    weeks = sorted({item.id.split("_")[0] for item in items})
    first = set(weeks[: len(weeks) // 2])
    return [i for i in items if i.id.split("_")[0] in first], [i for i in items if i.id.split("_")[0] not in first]


def in_corpus(settings: Settings, items: Sequence[QAItem]) -> set[str]:
    """Ids of the questions whose gold answer appears in some chunk of the collection (the recall ceiling)."""
    from rag.assistant import Assistant

    texts = [normalize_answer(c.text) for c in Assistant.from_settings(settings).store.iter_chunks()]
    return {
        item.id
        for item in items
        if any(contains_phrase(t, a) for a in map(normalize_answer, item.answers) for t in texts)
    }


def main(argv: Sequence[str]) -> None:
    """Measure (and with --fit, refit) the re-ranker weights; prints one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m evals.fit retrieval", description=__doc__.splitlines()[0])
    parser.add_argument("--rtqa", type=Path, help="RealTimeQA questions (rtqa.jsonl)")
    parser.add_argument("--rtqa-collection", default="rtqa2022")
    parser.add_argument("--squad", type=Path, help="SQuAD 2.0 dev JSON (its collection is indexed by `rag eval`)")
    parser.add_argument("--squad-collection", default="squad2-dev")
    parser.add_argument("--squad-sample", type=int, default=500)
    parser.add_argument("--fit-seed", type=int, default=1, help="SQuAD sample to fit on (never 0, the benchmark's)")
    parser.add_argument("--nq", type=Path, help="NQ-open dev questions as JSONL (answerable ones are scored)")
    parser.add_argument("--nq-collection", default="nq-open-w20-s0")
    parser.add_argument("--nq-home", type=Path, help="RAG_HOME of the NQ-open collection (default: RAG_HOME)")
    parser.add_argument("--fit", action="store_true", help="grid-search RerankWeights on the dev sets")
    parser.add_argument("--no-baseline", action="store_true", help="skip LangChain's ensemble")
    args = parser.parse_args(list(argv))
    if args.fit_seed == 0:
        parser.error("--fit-seed 0 is the benchmark sample; fit on another seed")
    started = time.perf_counter()
    base = Settings()
    baseline = not args.no_baseline
    dev: list[list[Scored]] = []
    held: list[tuple[str, list[Scored], float | None]] = []
    if args.rtqa:
        settings = base.model_copy(update={"collection": args.rtqa_collection})
        items = load_jsonl(args.rtqa)
        first, second = week_halves(items)
        found = in_corpus(settings, items)
        ceilings = [sum(i.id in found for i in part) / len(part) for part in (first, second, items)]
        scored = score_questions(settings, items, answer_gold, baseline=baseline)
        fit_ids = {i.id for i in first}
        rtqa_dev = [q for q in scored if q.item.id in fit_ids]
        dev.append(rtqa_dev)
        held.append(("rtqa weeks 1-3 (fit)", rtqa_dev, ceilings[0]))
        held.append(("rtqa weeks 4-6 (check)", [q for q in scored if q.item.id not in fit_ids], ceilings[1]))
        held.append(("rtqa all", scored, ceilings[2]))
    if args.squad:
        settings = base.model_copy(update={"collection": args.squad_collection})
        for seed in (args.fit_seed, 0):
            _, items = load_squad2(args.squad, sample=args.squad_sample, seed=seed)
            scored = score_questions(settings, [i for i in items if i.answerable], evidence_gold, baseline=baseline)
            if seed != 0:
                dev.append(scored)
            held.append(
                (f"squad2 {args.squad_sample}/seed {seed}" + (" (fit)" if seed else " (benchmark)"), scored, None)
            )
    if args.nq:
        settings = base.model_copy(update={"collection": args.nq_collection, "home": args.nq_home or base.home})
        items = [i for i in load_jsonl(args.nq) if i.answerable]
        held.append(("nq-open dev", score_questions(settings, items, answer_gold, baseline=baseline), None))
    weights = RerankWeights()
    out: dict[str, Any] = {"weights": weights.__dict__}
    if args.fit and dev:
        weights, value = fit(dev)
        out["fitted"] = {"weights": weights.__dict__, "objective": value, "grid": [SENTENCE_GRID, JOINT_GRID]}
        out["current"] = [report(name, scored, RerankWeights(), c) for name, scored, c in held]
    out["results"] = [report(name, scored, weights, c) for name, scored, c in held]
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=2))
