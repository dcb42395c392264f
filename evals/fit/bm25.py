"""`python -m evals.fit bm25`: BM25's length normalisation b (rag.bm25.B), scored by `rag eval` at each value.

Each b runs the same `rag eval` arguments in its own process (the index applies b when a snapshot loads), and the
table compares retrieval and answers side by side. Choose b on dev data (SQuAD 2.0 seed 1, NQ-open --split dev);
report held-out data (SQuAD seed 0, NQ-open --split test, RealTimeQA).

    RAG_HOME=... python -m evals.fit bm25 --b 0.75 1.0 -- dev-v2.0.json --format squad2 --sample 500 --seed 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence

METRICS = (
    "recall@1",
    "recall@5",
    "mrr@10",
    "answer_recall@5",
    "answer_accuracy",
    "refusal_rate",
    "confident_error_rate",
    "abstention_recall",
    "confident_unanswerable_rate",
)


def run_eval(b: float, eval_args: Sequence[str]) -> dict[str, float]:
    """`rag eval --json` with rag.bm25.B = b, in a child process; the metrics of METRICS it reports."""
    child = (
        f"import sys, rag.bm25 as bm25; bm25.B = {b!r}; from rag.cli import main; "
        "sys.argv = ['rag', *sys.argv[1:]]; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", child, "eval", *eval_args, "--json"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"rag eval failed at b={b}: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
    report = json.loads(done.stdout)
    return {name: report[name] for name in METRICS if report.get(name) is not None}


def main(argv: Sequence[str]) -> None:
    """Score each b; prints one JSON object: per b, the metrics, and each one's difference from the first b."""
    parser = argparse.ArgumentParser(prog="python -m evals.fit bm25", description=__doc__.splitlines()[0])
    parser.add_argument("--b", type=float, nargs="+", default=[0.75, 1.0], help="values of b, the first is the base")
    parser.add_argument("eval_args", nargs=argparse.REMAINDER, help="after --: the arguments of `rag eval`")
    args = parser.parse_args(list(argv))
    eval_args = args.eval_args[1:] if args.eval_args[:1] == ["--"] else args.eval_args
    if not eval_args:
        parser.error("give the `rag eval` arguments after --")
    scores = {b: run_eval(b, eval_args) for b in args.b}
    base = scores[args.b[0]]
    out = {
        f"b={b}": {name: round(value, 4) for name, value in metrics.items()}
        | {f"{name} change": round(value - base[name], 4) for name, value in metrics.items() if b != args.b[0]}
        for b, metrics in scores.items()
    }
    print(json.dumps({"eval": eval_args, **out}, indent=2))
