"""`python -m evals.fit news`: the date weights (time window, recency prior) on RealTimeQA, by week cross-validation.

RealTimeQA is the only dated question set: six weekly quizzes of 20 questions. Each question's candidates are
gathered once, with and without its `as_of`, from every ranking the search can fuse (BM25, vectors, the time
window's BM25, the recency BM25), and scored once (rag.retrieve.HybridSearch.rerank_features); every grid point
then fuses and re-ranks the same candidates as HybridSearch.search would. The gold is answer recall@5 (a chunk
holds a gold answer). With 120 questions a single split is noise, so the grid is scored by leaving one quiz week
out at a time: the point that is best on the other five weeks is scored on the sixth.

    RAG_HOME=... python -m evals.fit news --rtqa ../shared/data/realtimeqa-2022/rtqa_as_of.jsonl

The corpus dates every search-result article with its quiz week's Friday (when it was fetched), whatever its
publication. `--url-dated-copy SRC DST` writes a copy of the corpus whose articles carry the earlier date in their
URL's path (/2022/06/15/) instead, so the same eval can show what true publication dates would change.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from evals.dataset import QAItem, load_jsonl
from evals.metrics import contains_answer, recall_at
from ingest.load import split_front_matter
from rag.dates import TimeWindow, chunk_date
from rag.retrieve import HybridSearch, RerankWeights, fuse
from rag.settings import Settings
from rag.types import Candidate

WINDOW_WEIGHTS = (0.0, 0.5, 1.0, 2.0)
WINDOW_BOOSTS = (0.0, 0.15, 0.3, 0.6, 1.0)
RECENCY_DAYS = (7, 14, 30)
RECENCY_WEIGHTS = (0.0, 0.5, 1.0)
RECENCY_BOOSTS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
K = 5
# A day in a URL's path, as news sites publish them: /2022/06/15/ (a month alone is not a day).
URL_DAY = re.compile(r"/((?:19|20)\d\d)/(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])/")


@dataclass(frozen=True)
class Point:
    """One grid point: the time window's fusion weight and re-rank boost, and the recency prior's."""

    window_weight: float
    window_boost: float
    recency_days: int
    recency_weight: float
    recency_boost: float


@dataclass
class Pool:
    """One question's candidates under one as_of: each ranking (chunk indices, best first) and each chunk's evidence."""

    item: QAItem
    rrf: dict[str, np.ndarray]  # per ranking: 1 / (rrf_k + rank) of each chunk, 0 when not in it
    bm25: np.ndarray  # raw BM25 score, 0 when the chunk is not in the BM25 ranking (as in the search)
    sentence: np.ndarray
    joint: np.ndarray
    in_window: np.ndarray
    age: np.ndarray  # days before as_of; undated chunks count as infinitely old
    gold: np.ndarray


def gather(search: HybridSearch, item: QAItem, as_of: date | None, depth: int) -> Pool:
    """Every ranking the search could fuse for the question, and the re-rank evidence of all their chunks."""
    where = {"as_of": as_of.isoformat()} if as_of else None
    scope = search.scope(item.question, where)
    with search.pinned():
        dates, index = search.dates(), search.bm25()
        visible = dates.visible(scope)
        keep = visible if scope.hides_any(dates.newest) else None
        named = {"bm25": search.bm25_ranking(item.question, depth, keep)}
        if scope.window is not None and dates.within(scope.window).any():
            named["window"] = index.search(item.question, depth, dates.within(scope.window) & visible)
        named["vector"] = search.vector_ranking(item.question, depth, None, keep)
        for days in RECENCY_DAYS:
            recent = TimeWindow(scope.as_of - timedelta(days=days - 1), scope.as_of)
            named[f"recent{days}"] = index.search(item.question, depth, dates.within(recent) & visible)
        # Candidate knows the search's own rankings only: the recency rankings' other chunks join without scores.
        union = search.candidates(
            fuse({k: v for k, v in named.items() if not k.startswith("recent")}, {}, rrf_k=search.settings.rrf_k)
        )
        known = {c.chunk.id for c in union}
        extra = list(
            dict.fromkeys(
                chunk_id
                for name, ranking in named.items()
                if name.startswith("recent")
                for chunk_id, _ in ranking
                if chunk_id not in known
            )
        )
        fetched = {chunk.id: chunk for chunk in search.store.get_chunks(extra)}
        for chunk_id in extra:
            if chunk_id in fetched:
                union.append(
                    Candidate(chunk=fetched[chunk_id], rank=len(union) + 1, fused_rank=len(union) + 1, fused_score=0.0)
                )
        scored = search.rerank_features(item.question, union)
        top = max((c.bm25_score or 0.0 for c in union), default=0.0) or 1.0
        position = {c.chunk.id: i for i, c in enumerate(union)}
        days_of = [chunk_date(c.chunk.metadata) for c in union]
    rrf = {}
    for name, ranking in named.items():
        rrf[name] = np.zeros(len(union))
        for rank, (chunk_id, _) in enumerate(ranking, start=1):
            if chunk_id in position:
                rrf[name][position[chunk_id]] = 1.0 / (search.settings.rrf_k + rank)
    return Pool(
        item=item,
        rrf=rrf,
        bm25=np.array([f[0] * top for _, f in scored]),
        sentence=np.array([f[1] for _, f in scored]),
        joint=np.array([f[2] for _, f in scored]),
        in_window=np.array([scope.window is not None and scope.window.contains(d) for d in days_of], dtype=float),
        age=np.array([np.inf if d is None else (scope.as_of - d).days for d in days_of]),
        gold=np.array([contains_answer(c.chunk.text, item.answers) for c in union]),
    )


def first_gold(pool: Pool, point: Point, settings: Settings) -> int | None:
    """The rank of the first gold chunk after fusing and re-ranking the pool as HybridSearch.search does."""
    weights = {
        "bm25": settings.bm25_weight,
        "window": point.window_weight,
        "vector": settings.vector_weight,
        # The recency prior stands in for a time window; a question with its own window keeps only that one.
        f"recent{point.recency_days}": 0.0 if "window" in pool.rrf else point.recency_weight,
    }
    recency_boost = 0.0 if "window" in pool.rrf else point.recency_boost
    fused = np.zeros(len(pool.gold))
    for name, rrf in pool.rrf.items():
        fused += weights.get(name, 0.0) * rrf
    # Ties keep the union's order (BM25 first), as the stable sort in fuse does.
    chosen = np.argsort(-fused, kind="stable")[: settings.candidates]
    chosen = chosen[fused[chosen] > 0]
    bm25 = pool.bm25[chosen]
    rerank = RerankWeights()
    score = (
        rerank.bm25 * bm25 / (bm25.max(initial=0.0) or 1.0)
        + rerank.sentence * pool.sentence[chosen]
        + rerank.joint * pool.joint[chosen]
        + point.window_boost * pool.in_window[chosen]
        + recency_boost * (pool.age[chosen] < point.recency_days)
    )
    order = chosen[np.argsort(-score, kind="stable")] if settings.rerank else chosen
    hits = np.flatnonzero(pool.gold[order])
    return int(hits[0]) + 1 if hits.size else None


def recall(pools: Sequence[Pool], point: Point, settings: Settings) -> float:
    """Answer recall@5 over the pools."""
    return recall_at([first_gold(p, point, settings) for p in pools], K) or 0.0


def mean(table: dict[Point, dict[str, float]], sizes: dict[str, int], point: Point, weeks: Sequence[str]) -> float:
    """A grid point's recall@5 over these weeks, weighted by their question counts."""
    return sum(table[point][w] * sizes[w] for w in weeks) / sum(sizes[w] for w in weeks)


def week(item: QAItem) -> str:
    """RealTimeQA ids start with the quiz date."""
    return item.id.split("_")[0]


def url_dated_copy(source: Path, target: Path) -> dict[str, int]:
    """Copy the corpus's Markdown files, each dated by its URL's day when that is earlier than its front matter's."""
    target.mkdir(parents=True, exist_ok=True)
    counts = {"redated": 0, "kept": 0}
    for path in sorted(source.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        meta, body = split_front_matter(text)
        found = URL_DAY.search(meta.get("url", ""))
        day = "-".join(found.groups()) if found else None
        if day and meta.get("date") and day < meta["date"]:
            front = "".join(f"{key}: {value}\n" for key, value in (meta | {"date": day}).items())
            text = f"---\n{front}---\n{body}"
            counts["redated"] += 1
        else:
            counts["kept"] += 1
        (target / path.name).write_text(text, encoding="utf-8")
    return counts


def main(argv: Sequence[str]) -> None:
    """Score the grid with and without as_of, cross-validated by quiz week; prints one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m evals.fit news", description=__doc__.splitlines()[0])
    parser.add_argument("--rtqa", type=Path, help="RealTimeQA questions with as_of (rtqa_as_of.jsonl)")
    parser.add_argument("--collection", default="rtqa2022")
    parser.add_argument("--url-dated-copy", nargs=2, type=Path, metavar=("SRC", "DST"), help="write the URL-dated copy")
    args = parser.parse_args(list(argv))
    if args.url_dated_copy:
        print(json.dumps(url_dated_copy(*args.url_dated_copy)))
        return
    if args.rtqa is None:
        parser.error("--rtqa is required")
    started = time.perf_counter()
    from rag.assistant import Assistant

    settings = Settings().model_copy(update={"collection": args.collection})
    assistant = Assistant.from_settings(settings)
    assistant.warm_up()
    items = load_jsonl(args.rtqa)
    depth = settings.candidates
    pools = {
        "with as_of": [gather(assistant.search, i, i.as_of_date, depth) for i in items],
        "without as_of": [gather(assistant.search, i, None, depth) for i in items],
    }
    grid = [
        Point(*values)
        for values in itertools.product(WINDOW_WEIGHTS, WINDOW_BOOSTS, RECENCY_DAYS, RECENCY_WEIGHTS, RECENCY_BOOSTS)
    ]
    current = Point(settings.window_weight, settings.window_boost, RECENCY_DAYS[0], 0.0, 0.0)
    weeks = sorted({week(i) for i in items})
    out: dict[str, Any] = {"current": current.__dict__, "weeks": weeks}
    for name, pool in pools.items():
        by_week = {w: [p for p in pool if week(p.item) == w] for w in weeks}
        table = {point: {w: recall(by_week[w], point, settings) for w in weeks} for point in grid}
        sizes = {w: len(by_week[w]) for w in weeks}

        folds: list[dict[str, Any]] = []
        held_out = 0.0
        for held in weeks:
            rest = [w for w in weeks if w != held]
            best = max(grid, key=lambda p: (round(mean(table, sizes, p, rest), 6), -p.recency_boost, -p.window_boost))
            folds.append({"held_out": held, "best_on_rest": best.__dict__, "held_out_recall@5": table[best][held]})
            held_out += table[best][held] * sizes[held]
        overall = max(grid, key=lambda p: (round(mean(table, sizes, p, weeks), 6), -p.recency_boost, -p.window_boost))
        out[name] = {
            "current": mean(table, sizes, current, weeks),
            "cross_validated": held_out / len(pool),
            "folds": folds,
            "best_all_weeks": {"point": overall.__dict__, "recall@5": mean(table, sizes, overall, weeks)},
            "top": [
                {"point": p.__dict__, "recall@5": mean(table, sizes, p, weeks)}
                for p in sorted(grid, key=lambda p: -mean(table, sizes, p, weeks))[:10]
            ],
        }
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=2))
