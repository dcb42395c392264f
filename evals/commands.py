"""`rag eval`: this package's sub-command, registered through the `rag.commands` entry point."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from rag.cli_support import CollectionOption, JsonOption, fail, load_settings, progress_bar
from rag.types import IndexNotFound, RagError


def eval_(
    dataset: Annotated[
        Path,
        typer.Argument(help="A JSONL dataset, a SQuAD 2.0 JSON file (--format squad2) or NQ-open oracle .jsonl.gz."),
    ],
    collection: CollectionOption = None,
    k: Annotated[int | None, typer.Option("--k", min=1, help="Chunks handed to the answer step.")] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="extractive, llm or auto (default: RAG_MODE).")] = None,
    retriever: Annotated[
        str,
        typer.Option("--retriever", help="hybrid, bm25, vector or langchain-ensemble: whose ranks head the report."),
    ] = "hybrid",
    compare: Annotated[bool, typer.Option("--compare", help="Rank with every retriever, side by side.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="jsonl, squad2 or nq-open.")] = "jsonl",
    split: Annotated[
        str | None, typer.Option("--split", help="nq-open: dev, test or all (default) of the seeded halves.")
    ] = None,
    withhold: Annotated[
        float | None,
        typer.Option("--withhold", help="nq-open: share of passages left out, making questions unanswerable (0.2)."),
    ] = None,
    sample: Annotated[int | None, typer.Option("--sample", help="Evaluate a seeded sample of N questions.")] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the sample (and of nq-open's split and withheld share).")
    ] = 0,
    ignore_as_of: Annotated[
        bool,
        typer.Option(
            "--ignore-as-of",
            help="Ask without the lines' as_of (the default date); the timeliness line still judges by it.",
        ),
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write report.md, metrics.json and plots here.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Score retrieval, answers, citations, abstention and latency on a QA dataset."""
    from evals.report import text_table, write_report
    from evals.runner import RETRIEVERS, evaluate, load_dataset, prepare_collection
    from rag.assistant import Assistant
    from rag.lock import EXIT_IN_USE, HomeInUse

    if retriever not in RETRIEVERS:
        raise fail(f"unknown retriever '{retriever}' (choose from: {', '.join(RETRIEVERS)})", code=2)
    tty = sys.stderr.isatty()
    try:
        # Every line is checked before any work.
        data = load_dataset(dataset, fmt=fmt, sample=sample, seed=seed, split=split, withhold=withhold)
        settings = load_settings(collection=collection or data.default_collection, k=k, mode=mode)
        assistant = Assistant.from_settings(settings)  # type: ignore[arg-type]
        with progress_bar(enabled=tty) as progress:
            prepare_collection(data, assistant, progress=progress)
        retrievers = [retriever] + [r for r in RETRIEVERS if r != retriever] if compare else [retriever]
        with progress_bar(enabled=tty, label="evaluating") as progress:
            run = evaluate(
                assistant,
                data.items,
                retrievers=retrievers,
                config={"dataset": data.name, **data.details},
                progress=progress,
                ask_as_of=not ignore_as_of,
            )
        written = write_report(run, out) if out else []
    except IndexNotFound as exc:
        raise fail(str(exc), code=2) from exc
    except HomeInUse as exc:  # indexing a dataset's own documents makes this process the home's owner
        raise fail(str(exc), code=EXIT_IN_USE) from exc
    except RagError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(run.to_json(), indent=2, ensure_ascii=False))
    else:
        typer.echo(text_table(run))
        for path in written:
            typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add `eval` to the `rag` command line (the `rag.commands` entry point)."""
    app.command(name="eval")(eval_)
