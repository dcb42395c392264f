"""`rag ...`: parse arguments, call the library, print. Subcommands import their packages lazily."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rag.types import Answer, FinalEvent, IndexNotFound, RagError, StreamEvent, TokenEvent

if TYPE_CHECKING:
    from rag.settings import Settings

app = typer.Typer(
    name="rag",
    help="Question answering over your documents, with verified citations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CollectionOption = Annotated[
    str | None, typer.Option("--collection", "-c", help="Collection to use (default: RAG_COLLECTION).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with command-line overrides that were actually given."""
    from pydantic import ValidationError

    from rag.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise RagError(f"invalid setting {where}: {first['msg']}") from exc


# Ctrl-C: the shell's code for SIGINT, and what a rerun does.
EXIT_INTERRUPTED = 130
INTERRUPTED = "interrupted: work committed so far is kept; run the same command again to finish"


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


@app.command()
def status(collection: CollectionOption = None, as_json: JsonOption = False) -> None:
    """Show where the data lives, what is indexed, and which models answer."""
    from rag.assistant import Assistant
    from rag.lock import EXIT_IN_USE, HomeInUse, reading

    try:
        settings = load_settings(collection=collection)
        with reading(settings):
            info = Assistant.from_settings(settings).status()
    except HomeInUse as exc:
        raise fail(str(exc), code=EXIT_IN_USE) from exc
    except RagError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"store:       {info['store_mode']} ({info['location']})")
    typer.echo(f"collection:  {info['collection']}")
    typer.echo(f"documents:   {info['documents']}")
    typer.echo(f"chunks:      {info['chunks']}")
    dates = info["dates"]
    if dates["dated_documents"]:
        span = f"{dates['oldest']} to {dates['newest']}"
        typer.echo(f"dates:       {span} ({dates['dated_documents']} of {info['documents']} documents dated)")
    else:
        typer.echo("dates:       none known")
    typer.echo(f"embeddings:  {info['embedding_model']} (ingest in {info['embedding_precision']})")
    typer.echo(f"answers:     {info['answer_mode']}")
    typer.echo(f"llm:         {info.get('llm_model') or 'none'}")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (searched recursively).")],
    collection: CollectionOption = None,
    prune: Annotated[bool, typer.Option("--prune", help="Remove chunks of files under PATHS that are gone.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Load, chunk, embed and index documents. Unchanged files cost nothing; exit 1 if any file failed."""
    try:
        from ingest import ingest_paths
        from rag.assistant import Assistant
        from rag.lock import EXIT_IN_USE, HomeInUse, claim_home

        settings = load_settings(collection=collection)
        claim_home(settings, "rag ingest")  # before any model loads: a refusal is instant
        assistant = Assistant.from_settings(settings)
        with progress_bar(enabled=not as_json and sys.stderr.isatty()) as progress:
            report = ingest_paths(
                paths, settings=assistant.settings, store=assistant.store, prune=prune, progress=progress
            )
    except HomeInUse as exc:
        raise fail(str(exc), code=EXIT_IN_USE) from exc
    except RagError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        for failure in report.failed:
            typer.echo(f"failed: {failure.path}: {failure.error}", err=True)
        typer.echo(
            f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}, "
            f"deleted {report.deleted} chunks; {len(report.failed)} files failed; {report.chunks} chunks indexed"
        )
    if report.failed:
        raise typer.Exit(code=1)


class BadHistory(RagError):
    """--history is not a JSON list of [question, answer] pairs (exit 2, like other usage errors)."""


def read_history(value: str | None) -> list[tuple[str, str]]:
    """Earlier turns from inline JSON or a JSON file path: [["question", "answer"], ...]."""
    if not value:
        return []
    try:
        # JSON first: Path.is_file() on a long inline answer raises "File name too long".
        turns = json.loads(value)
    except (ValueError, RecursionError) as json_error:
        try:
            text = Path(value).read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            looks_inline = value.lstrip()[:1] in ("[", "{", '"')
            reason = f"invalid JSON: {json_error}" if looks_inline else f"no readable file: {_reason(exc)}"
            raise BadHistory(f"--history {reason}") from exc
        try:
            turns = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise BadHistory(f"--history file {value} is not JSON: {_reason(exc)}") from exc
    if not isinstance(turns, list) or not all(
        isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) for x in t) for t in turns
    ):
        raise BadHistory('--history must be a JSON list of ["question", "answer"] pairs of strings')
    return [(q, a) for q, a in turns]


def _reason(exc: BaseException) -> str:
    """A short one-line reason: an OSError's strerror (its str repeats the possibly huge file name)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    lines = str(exc).splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def format_answer(answer: Answer) -> str:
    """The answer, its short answer in bold (typer.echo drops the bold off a terminal), then the sources."""
    lines = [answer.text]
    if answer.short_answer:
        lines += ["", f"Short answer: {typer.style(answer.short_answer.text, bold=True)} [{answer.short_answer.n}]"]
    if answer.notice:
        lines += ["", f"note: {answer.notice}"]
    if answer.llm_error:
        lines.append(f"llm error: {answer.llm_error}")
    if answer.abstained and answer.abstain_reason:
        lines += ["", f"why: {answer.abstain_reason}"]
    if answer.citations:
        lines += ["", "Sources:"]
        for c in answer.citations:
            where = f", p. {c.page}" if c.page else ""
            flag = "" if c.is_supported else " (not supported by the source)"
            dated = c.date or "undated"
            lines.append(f"[{c.n}] {c.title}, {dated} ({c.source}{where}, chars {c.start}-{c.end}){flag}")
            lines.append(f"    “{c.quote}”")
    return "\n".join(lines)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    collection: CollectionOption = None,
    k: Annotated[int | None, typer.Option("--k", min=1, help="Chunks handed to the answer step.")] = None,
    history: Annotated[
        str | None,
        typer.Option("--history", help='Earlier turns: a JSON file or inline JSON, [["question", "answer"], ...].'),
    ] = None,
    mode: Annotated[
        str | None, typer.Option("--mode", help="llm, extractive or auto: llm when a model is set (RAG_MODE).")
    ] = None,
    stream: Annotated[
        bool, typer.Option("--stream", help="Print the answer as it is generated (with --json: one event a line).")
    ] = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Answer as of YYYY-MM-DD: later documents are unseen (default: today).", show_default=False
        ),
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only documents dated YYYY-MM-DD or later.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Only documents dated YYYY-MM-DD or earlier.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Answer QUESTION from the indexed documents, with numbered, verified citations."""
    from rag.assistant import Assistant
    from rag.dates import DateError, require_date
    from rag.lock import EXIT_IN_USE, HomeInUse, reading

    try:
        day = require_date(as_of, name="--as-of") if as_of is not None else None
        where = {key: value for key, value in (("since", since), ("until", until)) if value is not None} or None
        for key, value in (where or {}).items():
            require_date(value, name=f"--{key}")
    except DateError as exc:
        raise fail(str(exc), code=2) from exc
    try:
        turns = read_history(history)
        settings = load_settings(collection=collection, k=k, mode=mode)
        with reading(settings):  # another process (a chat) may own the home: read between its writes
            assistant = Assistant.from_settings(settings)  # type: ignore[arg-type]
            if stream:
                print_stream(assistant.stream(question, history=turns, where=where, as_of=day), as_json=as_json)
                return
            answer = assistant.ask(question, history=turns, where=where, as_of=day)
    except (IndexNotFound, BadHistory) as exc:
        raise fail(str(exc), code=2) from exc
    except HomeInUse as exc:
        raise fail(str(exc), code=EXIT_IN_USE) from exc
    except RagError as exc:
        raise fail(str(exc)) from exc
    typer.echo(json.dumps(answer.to_json_dict(), indent=2, ensure_ascii=False) if as_json else format_answer(answer))


def print_stream(events: Iterator[StreamEvent], *, as_json: bool) -> None:
    """Print tokens as they arrive, then the sources; a fallback answer that differs is printed whole."""
    shown = ""
    for event in events:
        if as_json:
            line = {"kind": "token", "text": event.text} if isinstance(event, TokenEvent) else {}
            if isinstance(event, FinalEvent):
                line = {"kind": "final", **event.answer.to_json_dict()}
            typer.echo(json.dumps(line, ensure_ascii=False))
        elif isinstance(event, TokenEvent):
            typer.echo(event.text, nl=False)
            sys.stdout.flush()
            shown += event.text
        elif shown and event.answer.text == shown:
            typer.echo(format_answer(event.answer)[len(shown) :])
        else:
            typer.echo(("\n\n" if shown else "") + format_answer(event.answer))


@app.command(name="eval")
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


@app.command()
def chat(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 7860,
    corpus: Annotated[Path, typer.Option("--corpus", help="Ingested first when the index is empty.")] = Path("corpus"),
    collection: CollectionOption = None,
) -> None:
    """Open the web chat; an empty index is first filled from --corpus, with progress."""
    from rag.assistant import Assistant
    from rag.lock import EXIT_IN_USE, HomeInUse, claim_home

    try:
        settings = load_settings(collection=collection)
        claim_home(settings, "rag chat")  # it serves and writes (uploads): no other process may write meanwhile
        assistant = Assistant.from_settings(settings)
    except HomeInUse as exc:
        raise fail(str(exc), code=EXIT_IN_USE) from exc
    except RagError as exc:
        raise fail(str(exc)) from exc
    try:
        from ingest.index import repair_interrupted

        repair_interrupted(assistant.settings, assistant.store)
        if assistant.store.count() == 0 and corpus.is_dir():
            from ingest import ingest_paths

            typer.echo(f"The index is empty: ingesting {corpus}/ first.", err=True)
            with progress_bar(enabled=sys.stderr.isatty()) as progress:
                report = ingest_paths([corpus], settings=assistant.settings, store=assistant.store, progress=progress)
            for failure in report.failed:
                typer.echo(f"failed: {failure.path}: {failure.error}", err=True)
            typer.echo(f"Indexed {report.chunks} chunks.", err=True)
    except RagError as exc:  # e.g. the Chroma server is down: start anyway, the chat shows the error per question
        typer.echo(f"warning: {exc}", err=True)

    from ui.app import serve

    typer.echo(f"Chat on http://{host}:{port}/ (Ctrl+C stops it)", err=True)
    try:
        serve(assistant, host=host, port=port)
    except OSError as exc:  # port taken, address not available
        raise fail(f"cannot listen on {host}:{port}: {exc}") from exc


@contextmanager
def progress_bar(*, enabled: bool, label: str = "indexing") -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar with an ETA on a terminal, yielding its update(done, total); None otherwise."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    # On stderr: stdout carries the result (JSON included), which a bar must never mix into.
    bar = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        console=Console(stderr=True),
    )
    task = bar.add_task("chunks", total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


def main() -> None:
    """Console entry point."""
    import logging
    import os

    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except SystemExit as done:
        # Typer ends any command that Ctrl-C reaches, at whatever point, with 130 and no word; say what it means.
        if done.code == EXIT_INTERRUPTED:
            typer.echo(f"error: {INTERRUPTED}", err=True)
        raise
