"""Benchmark: memory and BM25 rebuild time against collection size in server mode, and ingest peak memory.

Topology: one `chroma run` server, so that the app process's memory is measured apart from Chroma's. Each size is
a synthetic collection like the 100k `ask` bench (Zipf-distributed words, random unit vectors, one sentence vector
per chunk, as the real ingest would store). A fresh app process then loads the model, builds its BM25 snapshot
(timed), and answers questions; its RSS before the build (the model's baseline) and after the questions give the
per-chunk cost. Sizes: RAG_BENCH_SCALE_SIZES (default 10000,100000), ingest sizes RAG_BENCH_INGEST_SIZES
(default 1000,10000 chunks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from evals.bench.load import chroma_server
from rag.settings import Settings
from rag.store import MAX_CHROMA_BATCH, Store, chunk_to_metadata
from rag.types import Chunk, PassageVectors, SentenceVectors

REPO = Path(__file__).resolve().parents[2]
PER_CHUNK_TARGET_KB = 4.0
QUESTIONS = 20
CHANGED = 0.01  # the share of the collection another writer changes before the BM25 update is timed


def sizes(name: str, default: str) -> list[int]:
    """Chunk counts from a comma-separated environment variable."""
    return [int(n) for n in os.environ.get(name, default).split(",") if n.strip()]


VOCABULARY = [f"w{i}" for i in range(30_000)]
ZIPF = 1.0 / np.arange(1, len(VOCABULARY) + 1)
ZIPF /= ZIPF.sum()


def synthetic_chunks(rng: np.random.Generator, first: int, count: int) -> list[Chunk]:
    """Chunks of 40 Zipf-distributed words over a 30,000-word vocabulary, 20 to a source."""
    chunks = []
    for i, row in enumerate(rng.choice(len(VOCABULARY), size=(count, 40), p=ZIPF)):
        text = " ".join(VOCABULARY[w] for w in row)
        chunks.append(
            Chunk(
                id=f"syn-{first + i}",
                source=f"synthetic/{(first + i) // 20}.txt",
                title="Synthetic",
                start=0,
                end=len(text),
                text=text,
            )
        )
    return chunks


def write_synthetic(store: Store, rng: np.random.Generator, first: int, count: int) -> None:
    """Upsert `count` synthetic chunks from id syn-`first` on, each with one random sentence vector."""
    chunks = synthetic_chunks(rng, first, count)
    vectors = rng.normal(size=(count, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.upsert(
        [c.id for c in chunks],
        [c.text for c in chunks],
        [chunk_to_metadata(c) for c in chunks],
        [PassageVectors(v, SentenceVectors([(0, c.end)], v[None, :])) for c, v in zip(chunks, vectors, strict=True)],
    )


def fill(settings: Settings, n: int) -> None:
    """Write n synthetic chunks, each with one sentence vector, straight through the store (no model needed)."""
    from rag.embeddings import LocalEmbeddings

    store = Store(settings, LocalEmbeddings())  # lazy: the model is never loaded here
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for batch, first in enumerate(range(0, n, MAX_CHROMA_BATCH)):
        if batch and batch % 20 == 0:  # a long fill shows its rate as it goes
            print(f"fill: {first:,} / {n:,} chunks, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        write_synthetic(store, rng, first, min(MAX_CHROMA_BATCH, n - first))
    store.bump_revision()


def change_share(store: Store, n: int, share: float) -> None:
    """Another writer's ingest: delete the first `share` of the n chunks and add as many new ones."""
    count = max(1, int(n * share))
    store.delete([f"syn-{i}" for i in range(count)])
    rng = np.random.default_rng(1)
    for first in range(n, n + count, MAX_CHROMA_BATCH):
        write_synthetic(store, rng, first, min(MAX_CHROMA_BATCH, n + count - first))
    store.bump_revision()


# A fresh app process: RSS after the model is loaded and warm, BM25 build time, RSS after questions, ask latency.
APP = """
import json, resource, statistics, sys, time
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
from rag.assistant import Assistant
from rag.bm25 import load_bm25
from rag.settings import Settings
assistant = Assistant(Settings())
assistant.embeddings.warm_up()  # the model only: Assistant.warm_up() would build the BM25 snapshot into the baseline
assistant.embeddings.encode_cached(["warm"])
baseline = rss_mb()
started = time.perf_counter()
load_bm25(assistant.store)
build_s = time.perf_counter() - started
questions = [f"w{i} w{i * 7 + 3} w{i * 13 + 11} w{i * 31 + 5}" for i in range(1, int(sys.argv[1]) + 1)]
assistant.ask(questions[0])
times = []
for q in questions:
    t = time.perf_counter()
    assistant.ask(q)
    times.append((time.perf_counter() - t) * 1000)
times.sort()
after = rss_mb()
from evals.bench.scale import CHANGED, change_share  # another writer changes 1% of the collection: follow it
change_share(assistant.store, int(sys.argv[2]), CHANGED)
started = time.perf_counter()
load_bm25(assistant.store)
update_s = time.perf_counter() - started
print(json.dumps({"baseline_mb": baseline, "after_mb": after, "build_s": build_s, "update_s": update_s,
                  "p50_ms": statistics.median(times), "p95_ms": times[round(0.95 * (len(times) - 1))],
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def server_rss_mb(url: str) -> float:
    """RSS of the `chroma run` process listening on the URL's port (found by its command line)."""
    wanted = f"--port\0{url.rsplit(':', 1)[1]}\0"
    total = 0.0
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or wanted not in (proc / "cmdline").read_text():
                continue
            status = (proc / "status").read_text()
        except OSError:  # ended meanwhile
            continue
        total += sum(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:"))
    return total


def measure_size(url: str, home: Path, n: int) -> str:
    """One row: fill a collection of n chunks, then measure a fresh app process over it."""
    settings = Settings(home=home, chroma_url=url, collection=f"scale-{n}")
    started = time.perf_counter()
    fill(settings, n)
    fill_s = time.perf_counter() - started
    env = os.environ | {"RAG_HOME": str(home), "RAG_CHROMA_URL": url, "RAG_COLLECTION": settings.collection}
    app = subprocess.run(
        [sys.executable, "-c", APP, str(QUESTIONS), str(n)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    got = json.loads(app.stdout.strip().splitlines()[-1])
    per_chunk_kb = (got["after_mb"] - got["baseline_mb"]) * 1024 / n
    verdict = "meets" if per_chunk_kb <= PER_CHUNK_TARGET_KB else "MISSES"
    return (
        f"| {n:,} | {fill_s:.0f} | {got['build_s']:.1f} | {got['update_s']:.1f} | {got['baseline_mb']:.0f} | "
        f"{got['after_mb']:.0f} | "
        f"{per_chunk_kb:.1f} ({verdict} ≤ {PER_CHUNK_TARGET_KB:.0f}) | {server_rss_mb(url):.0f} | "
        f"{got['p50_ms']:.0f} / {got['p95_ms']:.0f} |"
    )


# `rag ingest` in this process, its peak RSS read just before its BM25 refresh too (ru_maxrss: the peak so far).
INGEST = """
import resource, sys
import rag.corpus
from rag.cli import app
refresh, before = rag.corpus.Corpus.refresh_bm25, []
def measured(corpus):
    before.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    refresh(corpus)
rag.corpus.Corpus.refresh_bm25 = measured
try:
    app(["ingest", sys.argv[1]])
except SystemExit as done:
    code = done.code or 0
print(code, before[0] if before else 0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def ingest_peak(url: str, home: Path, chunks: int) -> str:
    """Peak RSS of a real `rag ingest` of `chunks` one-chunk files (model, parse, embed, index, BM25 rebuild)."""
    folder = home / f"files-{chunks}"
    for n in range(chunks):
        sub = folder / f"{n // 500:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"n{n}.txt").write_text(
            f"Bulletin {n}: the water board of district {n % 97} approved project {n * 7919 % 10007} on day "
            f"{n % 28 + 1}, after a vote of {n % 13} to {n % 7}.\n"
        )
    env = os.environ | {
        "RAG_HOME": str(home / f"ingest-{chunks}"),
        "RAG_CHROMA_URL": url,
        "RAG_COLLECTION": f"ingest-{chunks}",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", INGEST, str(folder)], env=env, capture_output=True, text=True, timeout=3600, check=True
    )
    out = done.stdout.splitlines()[-1].split()  # after the ingest's own summary
    seconds = time.perf_counter() - started
    return f"| {chunks:,} | {float(out[1]):.0f} | {float(out[2]):.0f} | {seconds:.0f} | exit {out[0]} |"


def run() -> str:
    """The scale section of BENCHMARKS.md."""
    rows, ingest_rows = [], []
    scale_sizes, ingest_sizes = (
        sizes("RAG_BENCH_SCALE_SIZES", "10000,100000"),
        sizes("RAG_BENCH_INGEST_SIZES", "1000,10000"),
    )
    missing = [
        *([] if 1_000_000 in scale_sizes else ["1,000,000 chunks (RAG_BENCH_SCALE_SIZES=...,1000000)"]),
        *([] if 100_000 in ingest_sizes else ["ingest of 100,000 chunks (RAG_BENCH_INGEST_SIZES)"]),
    ]
    with tempfile.TemporaryDirectory(prefix="rag-scale-") as tmp:
        work = Path(tmp)
        with chroma_server(work / "chroma") as url:
            for n in scale_sizes:
                print(f"scale: {n:,} chunks", file=sys.stderr, flush=True)
                rows.append(measure_size(url, work, n))
            for n in ingest_sizes:
                print(f"ingest: {n:,} chunks", file=sys.stderr, flush=True)
                ingest_rows.append(ingest_peak(url, work, n))
    return "\n".join(
        [
            "## Scale: memory and BM25 rebuild time (server mode)",
            "",
            "One `chroma run` server; a synthetic collection per size (written straight to Chroma, no embedding: "
            "the *fill* column), then a fresh app process: its RSS once the model is loaded and warm (*baseline*), "
            "the time to build its BM25 snapshot from the collection, its RSS after that and "
            f"{QUESTIONS} warm `ask`s, and their latency. *Per chunk* is (after − baseline) / chunks; the target "
            "is the issue's ≤ 4 KB. Chroma's RSS is the server's, counted apart. Then the bench deletes "
            f"{CHANGED:.0%} of the chunks and adds as many (another writer's ingest), and *BM25 update s* is the "
            "time the app's snapshot takes to follow: the collection's ids fetched, the new chunks read and "
            "tokenised, the postings merged.",
            "",
            "| chunks | fill s | BM25 build s | BM25 update s | app baseline MB | app after MB | per chunk KB | "
            "Chroma MB | ask p50 / p95 ms |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Ingest peak RSS: a real `rag ingest` of one-chunk files into the same server (model load, parse, "
            "embed, index, BM25 build), as the peak RSS of the process: before its BM25 build, and in all.",
            "",
            "| chunks | peak RSS before the BM25 build MB | peak RSS MB | wall s | result |",
            "|---|---|---|---|---|",
            *ingest_rows,
            "",
            *(["Not measured by this run: " + "; ".join(missing) + "."] if missing else []),
        ]
    )
