"""Benchmark: concurrent chat sessions while a separate `rag ingest` writes to the same Chroma server.

Topology: a `chroma run` server (the supported multi-process setup), the chat app serving gradio_client sessions in
this process, and `rag ingest` in another process, all sharing one RAG_HOME for records and document texts. The same
sessions run once quietly and once beside the ingest, in the same run, so their latencies compare.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ingest import ingest_paths
from rag.assistant import Assistant
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from rag.store import Store

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "corpus"
SEED_QA = REPO / "evals" / "data" / "seed_qa.jsonl"
BIN = Path(sys.executable).parent
SESSIONS = 20
DURATION_S = 60.0
FILES = 500
TOWNS = ("Kisumu", "Nakuru", "Eldoret", "Garissa", "Malindi", "Nyeri", "Kitale", "Voi", "Lamu", "Embu")
ANSWER_TIMEOUT_S = 120.0  # one answer on a loaded machine; beyond this a session counts an error


def write_files(folder: Path, count: int) -> Path:
    """Write `count` distinct one-chunk bulletins, none about the seed corpus's story."""
    for n in range(count):
        path = folder / f"{n // 100:02d}" / f"bulletin-{n:04d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        town = TOWNS[n % len(TOWNS)]
        path.write_text(
            f"Bulletin {n}: the {town} water board met on day {n % 28 + 1} and approved {n * 7919 % 10007}.\n"
        )
    return folder


def seed_questions() -> list[str]:
    """The hand-written seed-set questions (their histories are left out: each session builds its own)."""
    return [json.loads(line)["question"] for line in SEED_QA.read_text().splitlines() if line.strip()]


def free_port() -> int:
    """A loopback port the OS says is free."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, *, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll url until it answers 2xx, failing fast if the process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=2).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not come up in {timeout_s}s")


@contextmanager
def chroma_server(data: Path) -> Iterator[str]:
    """A `chroma run` server on a free loopback port; yields its URL."""
    port = free_port()
    chroma = shutil.which("chroma", path=str(BIN)) or "chroma"
    with (data.parent / "chroma.log").open("wb") as log:
        server = subprocess.Popen(
            [chroma, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout_s=60, process=server)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=15)


@contextmanager
def chat_app(assistant: Assistant) -> Iterator[str]:
    """The chat app on a free loopback port in this process; yields its URL."""
    from ui.app import serve

    port = free_port()
    demo = serve(assistant, port=port, block=False)
    try:
        wait_for(f"http://127.0.0.1:{port}/", timeout_s=60)
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def ingest_process(settings: Settings, folder: Path, *, collection: str) -> subprocess.Popen[str]:
    """`rag ingest folder --json` in a process of its own, against the same server and home."""
    env = os.environ | {
        "RAG_HOME": str(settings.home),
        "RAG_CHROMA_URL": str(settings.chroma_url),
        "RAG_COLLECTION": collection,
    }
    rag = shutil.which("rag", path=str(BIN)) or "rag"
    return subprocess.Popen(
        [rag, "ingest", str(folder), "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def citation_holds(assistant: Assistant, citation: dict[str, Any]) -> bool:
    """The quote is exactly the cited chunk's text, and the stored document's text, at the cited offsets."""
    start, end, quote = citation["start"], citation["end"], citation["quote"]
    chunks = assistant.store.get_chunks([citation["chunk_id"]])
    if not chunks or not chunks[0].start <= start <= end <= chunks[0].end:
        return False
    chunk = chunks[0]
    document = assistant.document(citation["source"])
    return (
        chunk.text[start - chunk.start : end - chunk.start] == quote
        and document is not None
        and document.text[start:end] == quote
    )


@dataclass
class SessionsResult:
    """What the chat sessions saw: one latency per answer, and every error or broken citation, in one line each."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bad_citations: list[str] = field(default_factory=list)
    citations: int = 0

    @property
    def citation_validity(self) -> float:
        """The share of citations whose quote holds (1.0 with none)."""
        return 1.0 - len(self.bad_citations) / self.citations if self.citations else 1.0


def run_sessions(
    url: str,
    assistant: Assistant,
    *,
    sessions: int,
    questions: Sequence[str],
    until: threading.Event,
    min_s: float,
) -> SessionsResult:
    """`sessions` gradio_client sessions asking in turn, for at least min_s and until `until` is set."""
    from gradio_client import Client

    result = SessionsResult()
    lock = threading.Lock()
    started = time.monotonic()

    def session(n: int) -> None:
        try:
            client = Client(url, verbose=False, httpx_kwargs={"timeout": ANSWER_TIMEOUT_S})
        except Exception as exc:  # counted: a session that cannot even connect is an error
            with lock:
                result.errors.append(f"session {n} connect: {type(exc).__name__}: {exc}".splitlines()[0])
            return
        asked = 0
        while time.monotonic() - started < min_s or not until.is_set():
            question = questions[(n * 7 + asked) % len(questions)]
            asked += 1
            t0 = time.perf_counter()
            try:
                answer = client.predict(message=question, k=5, mode="extractive", api_name="/chat")
            except Exception as exc:  # counted, not raised: the benchmark reports every failure
                with lock:
                    result.errors.append(f"session {n}: {type(exc).__name__}: {exc}".splitlines()[0])
                continue
            elapsed = (time.perf_counter() - t0) * 1000
            bad = [c for c in answer["citations"] if not citation_holds(assistant, c)]
            with lock:
                result.latencies_ms.append(elapsed)
                result.citations += len(answer["citations"])
                result.bad_citations += [f"{question!r}: [{c['n']}] {c['chunk_id']}" for c in bad]

    threads = [threading.Thread(target=session, args=(n,), name=f"load-session-{n}") for n in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


@dataclass
class LoadRun:
    """A quiet run and a loaded run of the same sessions, and what the ingest beside the loaded one produced."""

    quiet: SessionsResult
    loaded: SessionsResult
    ingest_s: float
    ingest_error: str | None
    loaded_ids: set[str]
    duplicates: int
    seed_ids: set[str]


def run_load(
    work: Path,
    folder: Path,
    *,
    embeddings: LocalEmbeddings,
    sessions: int,
    duration_s: float,
    quiet_duration_s: float | None = None,
) -> LoadRun:
    """Seed a server, run the sessions quietly, then again beside an ingest of the files in folder."""
    work.mkdir(parents=True, exist_ok=True)
    with chroma_server(work / "chroma") as url:
        settings = Settings(home=work / "rag", chroma_url=url, mode="extractive")
        assistant = Assistant(settings, embeddings=embeddings)
        ingest_paths([CORPUS], settings=settings, store=assistant.store)
        seed_ids = {c.id for c in assistant.store.iter_chunks()}
        assistant.warm_up()
        questions = seed_questions()
        with chat_app(assistant) as app:
            done = threading.Event()
            done.set()
            quiet = run_sessions(
                app, assistant, sessions=sessions, questions=questions, until=done, min_s=quiet_duration_s or duration_s
            )
            ingest_done = threading.Event()
            started = time.monotonic()
            process = ingest_process(settings, folder, collection=settings.collection)

            def watch() -> None:
                process.wait()
                ingest_done.set()

            threading.Thread(target=watch, name="ingest-watch", daemon=True).start()
            loaded = run_sessions(
                app, assistant, sessions=sessions, questions=questions, until=ingest_done, min_s=duration_s
            )
            stdout, stderr = process.communicate()
            ingest_s = time.monotonic() - started
        stored = [c for c in Store(settings, embeddings).iter_chunks()]
        ids = [c.id for c in stored]
        ingested = {c.id for c in stored if c.id not in seed_ids}
        error = None if process.returncode == 0 else (stderr.strip().splitlines() or ["no output"])[-1]
        if error is None and json.loads(stdout)["failed"]:
            error = f"files failed: {json.loads(stdout)['failed'][:3]}"
    return LoadRun(quiet, loaded, ingest_s, error, ingested, len(ids) - len(set(ids)), seed_ids)


def quiet_ingest_ids(work: Path, folder: Path, *, embeddings: LocalEmbeddings) -> tuple[set[str], float]:
    """The chunk ids a quiet ingest of the same files gives (embedded store, nothing else running), and its time."""
    settings = Settings(home=work / "rag")
    store = Store(settings, embeddings)
    started = time.monotonic()
    ingest_paths([folder], settings=settings, store=store)
    return {c.id for c in store.iter_chunks()}, time.monotonic() - started


def percentiles(samples_ms: Sequence[float]) -> tuple[float, float]:
    """p50 and p95 of latency samples."""
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def row(name: str, result: SessionsResult, seconds: float) -> str:
    """One table row for a run of sessions that lasted `seconds`."""
    p50, p95 = percentiles(result.latencies_ms) if result.latencies_ms else (float("nan"), float("nan"))
    return (
        f"| {name} | {len(result.latencies_ms)} | {len(result.latencies_ms) / seconds:.1f} | {p50:.0f} / {p95:.0f} | "
        f"{len(result.errors)} | {result.citation_validity:.3f} ({result.citations}) |"
    )


def run() -> str:
    """Measure and return the Markdown section for BENCHMARKS.md."""
    load_before = os.getloadavg()
    embeddings = LocalEmbeddings()
    embeddings.embed_documents(["warm up"])
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        folder = write_files(Path(tmp) / "files", FILES)  # chunk ids name their source: one folder for both
        quiet_ids, quiet_ingest_s = quiet_ingest_ids(Path(tmp) / "quiet", folder, embeddings=embeddings)
        started = time.monotonic()
        result = run_load(Path(tmp) / "load", folder, embeddings=embeddings, sessions=SESSIONS, duration_s=DURATION_S)
        loaded_s = time.monotonic() - started
    load_after = os.getloadavg()
    same = result.loaded_ids == quiet_ids and result.duplicates == 0 and result.ingest_error is None
    errors = result.quiet.errors + result.loaded.errors
    lines = [
        "## Load: concurrent chats beside an ingest",
        "",
        f"{SESSIONS} gradio_client sessions ask the seed-set questions in turn (`/chat`, extractive, k=5) against the "
        f"chat app over the seed corpus, first for {DURATION_S:.0f} s alone, then for at least {DURATION_S:.0f} s and "
        f"until a `rag ingest` of {FILES} one-chunk files, run as a separate process, has finished writing to the "
        "same collection. Chroma is a `chroma run` server on loopback (the supported multi-process setup); records "
        "and document texts share one RAG_HOME. Latency is one `/chat` round trip, as a client sees it.",
        "",
        "| run | answers | answers/s | p50 / p95 ms | errors | citation validity (citations) |",
        "|---|---|---|---|---|---|",
        row("quiet", result.quiet, DURATION_S),
        row("beside the ingest", result.loaded, max(DURATION_S, result.ingest_s)),
        "",
        f"- Ingest beside the chats: {result.ingest_s:.0f} s for {FILES} files (quietly, embedded, in-process: "
        f"{quiet_ingest_s:.0f} s). Its chunk ids {'equal' if same else 'DIFFER from'} a quiet ingest's "
        f"({len(result.loaded_ids)} vs {len(quiet_ids)}, {result.duplicates} duplicates"
        f"{', error: ' + result.ingest_error if result.ingest_error else ''}).",
        f"- Errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else "") + ".",
        f"- Broken citations: {len(result.quiet.bad_citations) + len(result.loaded.bad_citations)}.",
        f"- Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.2f}' for x in load_after)} (the machine is shared: other jobs add to both runs).",
        f"- The whole scenario took {loaded_s:.0f} s after the quiet ingest.",
    ]
    return "\n".join(lines)
