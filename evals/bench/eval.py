"""Benchmark: retrieval and answer quality on SQuAD 2.0 (500 questions) and on the seed set, retrievers compared."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from evals.gates import SEED_DATASET, SEED_GATES, gate_failures
from evals.metrics import METRIC_KEYS
from evals.report import format_value, write_report
from evals.runner import RETRIEVERS, EvalRun, evaluate, load_dataset, prepare_collection
from rag.assistant import Assistant
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SQUAD = REPO.parent / "shared" / "data" / "squad2-dev" / "dev-v2.0.json"
OUT = REPO / "bench-out"
SQUAD_SAMPLE, SQUAD_SEED = 500, 0
BASELINE = "langchain-ensemble"
COLUMNS = ("recall@1", "recall@5", "recall@10", "mrr@10", "latency_p50_ms", "latency_p95_ms")
ANSWER_COLUMNS = METRIC_KEYS[METRIC_KEYS.index("answer_accuracy") : METRIC_KEYS.index("n")]
TARGETS = {"recall@5": 0.97, "mrr@10": 0.90}
"""Retrieval targets for hybrid on SQuAD, from the retrieval issue."""


def retrieval_table(run: EvalRun) -> str:
    """Retrieval metrics per retriever, with hybrid's ratio to the LangChain baseline measured in the same run."""
    rows = ["| retriever | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name in run.retrievers:
        m = run.ranking_metrics(name)
        rows.append(f"| {name} | " + " | ".join(format_value(m[c], c) for c in COLUMNS) + " |")
    base, ours = run.ranking_metrics(BASELINE), run.ranking_metrics("hybrid")
    ratios = " | ".join(f"{ours[c] / base[c]:.2f}×" if ours[c] is not None and base[c] else "—" for c in COLUMNS)
    rows.append(f"| hybrid ÷ {BASELINE} | {ratios} |")
    return "\n".join(rows)


def answer_table(run: EvalRun) -> str:
    """The answer, citation, abstention and `ask` latency metrics (hybrid retrieval, as `ask` uses)."""
    m = run.metrics("hybrid")
    table = "\n".join(
        [
            "| " + " | ".join(ANSWER_COLUMNS) + " |",
            "|---" * len(ANSWER_COLUMNS) + "|",
            "| " + " | ".join(format_value(m[c], c) for c in ANSWER_COLUMNS) + " |",
        ]
    )
    abstention = run.abstention()
    if abstention is None:
        return table
    return (
        f"{table}\n\nAbstention signal: confidence AUC {abstention['auc']:.3f} (the chance an unanswerable question "
        f"scores below an answerable one) at threshold {abstention['threshold']:.2f}; the trade-off at other "
        "thresholds is in the report."
    )


def run_squad(embeddings: LocalEmbeddings) -> str:
    """SQuAD 2.0 dev: all 646 paragraphs indexed (once, cached in bench-out), 500 seeded questions."""
    if not SQUAD.exists():
        return f"### SQuAD 2.0\n\nSkipped: {SQUAD} is not there."
    data = load_dataset(SQUAD, fmt="squad2", sample=SQUAD_SAMPLE, seed=SQUAD_SEED)
    settings = Settings(home=OUT / "eval-home", collection="squad2-dev")
    assistant = Assistant(settings, embeddings=embeddings)
    started = time.monotonic()
    prepare_collection(data, assistant)
    index_s = time.monotonic() - started
    started = time.monotonic()
    run = evaluate(assistant, data.items, retrievers=list(RETRIEVERS), config={"dataset": data.name, **data.details})
    eval_s = time.monotonic() - started
    write_report(run, OUT / "eval-squad2")
    hybrid = run.metrics("hybrid")
    answerable = sum(q["answerable"] for q in run.per_question)
    targets = ", ".join(
        f"{key} {hybrid[key]:.3f} {'meets' if hybrid[key] >= bound else 'MISSES'} the target {bound}"
        for key, bound in TARGETS.items()
    )
    return f"""### SQuAD 2.0 dev: {len(run.per_question)} questions ({answerable} answerable), seed {SQUAD_SEED}

All {len(data.paragraphs or [])} paragraphs indexed as one document each ({assistant.store.count()} chunks,
collection `squad2-dev`; {index_s:.0f} s, cached between runs). Every retriever ranks the same questions 20 deep.
A chunk is a hit if it holds the gold paragraph, or lies inside it and holds a gold answer. Latency here is the
ranking time per question (lower is better, so a ratio above 1 means hybrid is slower).

{retrieval_table(run)}

Hybrid: {targets}.

Answers (`Assistant.ask`, {run.config["mode"]}, k = {run.config["k"]}; latency is the whole `ask`):

{answer_table(run)}

Evaluated in {eval_s:.0f} s. Report and plots: `bench-out/eval-squad2/` (report.md and the recall@k, latency and
abstention plots)."""


def run_seed(embeddings: LocalEmbeddings) -> str:
    """The hand-written seed set over corpus/, with the regression gates `make test` enforces."""
    from ingest import ingest_paths

    data = load_dataset(REPO / SEED_DATASET)
    with tempfile.TemporaryDirectory() as tmp:
        assistant = Assistant(Settings(home=Path(tmp) / "rag"), embeddings=embeddings)
        ingest_paths([REPO / "corpus"], settings=assistant.settings, store=assistant.store)
        run = evaluate(assistant, data.items, retrievers=list(RETRIEVERS), config={"dataset": data.name})
        write_report(run, OUT / "eval-seed")
    hybrid = run.metrics("hybrid")
    gates = "\n".join(
        f"| {key} | {format_value(hybrid[key], key)} | {op} {bound} |" for key, (op, bound) in SEED_GATES.items()
    )
    failed = gate_failures(hybrid)
    verdict = "All gates pass." if not failed else "Gates missed: " + "; ".join(failed)
    return f"""### Seed set: `{SEED_DATASET}` over `corpus/` ({len(run.per_question)} questions)

{retrieval_table(run)}

Answers (`Assistant.ask`, {run.config["mode"]}):

{answer_table(run)}

Regression gates (`tests/test_eval_cli.py`, values in `evals/gates.py`), measured value vs gate:

| metric | measured | gate |
|---|---|---|
{gates}

{verdict}"""


def run() -> str:
    """The eval benchmark section of BENCHMARKS.md."""
    embeddings = LocalEmbeddings()
    squad = run_squad(embeddings)
    seed = run_seed(embeddings)
    return f"""## eval

`rag eval ... --compare`: hybrid (ours: bm25s + MiniLM sentence vectors, weighted RRF, then the re-ranker) against
BM25 alone, sentence vectors alone (a chunk ranks by its best sentence),
and the baseline, LangChain's `EnsembleRetriever` of `BM25Retriever` (rank_bm25, lower-case words) and the Chroma
retriever at 0.5/0.5 over the same chunks. Ratios are hybrid ÷ baseline in the same run.
Retrieval latency is the time to rank 20 deep; answer latency is the whole `Assistant.ask`.

{squad}

{seed}"""
