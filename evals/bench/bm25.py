"""Benchmark: the BM25 build alone, in process, on the `scale` bench's synthetic chunks (no Chroma, no model).

`scale` times the rebuild inside an app process, fetch from the server included. This times only
`BM25Index.build` (tokenising, stemming, the postings) on chunks already in memory, so the build's own cost at 1M
chunks is known apart; then `BM25Index.updated` with 1% of the chunks replaced, the work a revision costs a snapshot
that follows the collection. Sizes: RAG_BENCH_BM25_SIZES (default 100000,1000000).
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np

from evals.bench.scale import CHANGED, sizes, synthetic_chunks
from rag.bm25 import BM25Index

QUERY = "w5 w17 w300 w2999"  # a common, two middling and a rare word of the Zipf vocabulary


def rss_mb() -> float:
    """This process's resident memory now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def measure(n: int) -> str:
    """One table row: build seconds, one search, and the build's peak memory over its input."""
    rng = np.random.default_rng(0)
    chunks = []
    for first in range(0, n, 10_000):  # in batches, so that making them never peaks above the chunks themselves
        chunks.extend(synthetic_chunks(rng, first, min(10_000, n - first)))
    before = rss_mb()
    started = time.perf_counter()
    index = BM25Index.build(chunks, "bench")
    built = time.perf_counter() - started
    # ru_maxrss is this process's peak so far; sizes run smallest first, so the peak is this build's.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    index.search(QUERY, 50)
    searched = (time.perf_counter() - started) * 1000
    changed = max(1, int(n * CHANGED))
    added = synthetic_chunks(rng, n, changed)
    started = time.perf_counter()
    index.updated(index.ids[:changed], added, "bench-2")
    update = time.perf_counter() - started
    return (
        f"| {n:,} | {built:.1f} | {built / n * 1e6:.0f} | {update:.2f} | {searched:.0f} | {max(peak - before, 0):.0f} |"
    )


def run() -> str:
    """The bm25 section of BENCHMARKS.md."""
    rows = []
    for n in sorted(sizes("RAG_BENCH_BM25_SIZES", "100000,1000000")):
        print(f"bm25: {n:,} chunks", file=sys.stderr, flush=True)
        rows.append(measure(n))
    return "\n".join(
        [
            "## BM25 build alone (in process, synthetic chunks)",
            "",
            "`BM25Index.build` on the `scale` bench's synthetic chunks (40 Zipf-distributed words each), already "
            "in memory: no Chroma fetch, no model. *Peak over input* is the process's peak RSS during the build "
            "minus its RSS with the chunks made, so the build's own working memory. *Update s* is "
            f"`BM25Index.updated` with {CHANGED:.0%} of the chunks removed and as many new ones added (tokenised "
            "there): what a snapshot does when another writer changes the collection, the Chroma fetch aside.",
            "",
            "| chunks | build s | µs a chunk | update s | one search ms | peak over input MB |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
