"""A `chroma run` server killed mid-ingest or mid-chat: one clear line, and after a restart everything carries on.

Each test runs a server of its own, so it can be killed (SIGKILL, as a crash or OOM kill would) and restarted on the
same data folder and port (the record manager's namespace names the URL).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CORPUS, free_port, wait_until_up
from test_ingest_interrupt import committed_records

from ingest.index import read_document
from ingest.load import find_files
from rag.assistant import Assistant
from rag.corpus import INDEX_BATCH, make_record_manager
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from rag.store import Store

pytestmark = pytest.mark.server

RAG = shutil.which("rag", path=str(Path(sys.executable).parent)) or "rag"
CHROMA = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
FILES = INDEX_BATCH * 2 + 50  # one chunk each: the kill lands after the first committed batch, before the last
TOWNS = ["Kisumu", "Nakuru", "Eldoret", "Garissa", "Malindi", "Nyeri", "Kitale", "Voi", "Lamu", "Embu"]
QUESTION = "How many additional police officers did Kenya send to Haiti?"


class ChromaServer:
    """One `chroma run` process on a fixed port and data folder, which a test can kill and start again."""

    def __init__(self, data: Path) -> None:
        self.data, self.port = data, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.data.parent / "chroma.log").open("ab")
        self.process = subprocess.Popen(
            [CHROMA, "run", "--path", str(self.data), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until_up(f"{self.url}/api/v2/heartbeat", timeout_s=60, process=self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=15)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChromaServer]:
    chroma = ChromaServer(tmp_path / "chroma-db")
    chroma.start()
    try:
        yield chroma
    finally:
        chroma.kill()


def write_bulletins(folder: Path, count: int) -> Path:
    for n in range(count):
        path = folder / f"{n // 100:02d}" / f"bulletin-{n:04d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        town = TOWNS[n % len(TOWNS)]
        path.write_text(f"Bulletin {n}: the {town} road board met on day {n % 28 + 1} and paid {n * 7919 % 10007}.\n")
    return folder


def test_server_killed_mid_ingest_then_restarted(tmp_path: Path, server: ChromaServer) -> None:
    home, docs = tmp_path / "rag", write_bulletins(tmp_path / "docs", FILES)
    env = os.environ | {"RAG_HOME": str(home), "RAG_CHROMA_URL": server.url}
    settings = Settings(home=home, chroma_url=server.url)
    expected = {c.id for path in find_files([docs]) for c in read_document(path.resolve(), settings)[1]}
    assert len(expected) == FILES

    run = subprocess.Popen(
        [RAG, "ingest", str(docs), "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 300
        while committed_records(home) < INDEX_BATCH:
            assert run.poll() is None, f"ingest ended before the first batch was committed: {run.communicate()}"
            assert time.monotonic() < deadline, "no batch committed in time"
            time.sleep(0.05)
        server.kill()
        _, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    committed = committed_records(home)
    assert INDEX_BATCH <= committed < FILES, "the kill must land mid-run for this test to mean anything"
    assert run.returncode == 1
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Chroma server at " + server.url), lines

    server.start()
    rerun = subprocess.run([RAG, "ingest", str(docs), "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["failed"] == [] and summary["chunks"] == FILES
    assert summary["unchanged"] >= committed, "committed work is kept, not redone"

    store = Store(settings, LocalEmbeddings())
    stored = [c.id for c in store.iter_chunks()]
    assert store.count() == len(stored) == len(set(stored)) == FILES, "no duplicates, nothing lost"
    assert set(stored) == expected
    assert set(make_record_manager(settings).list_keys()) == expected, "the record manager agrees with the store"
    sentences = store.sentences.get(include=["metadatas"])
    assert {str(m["chunk_id"]) for m in sentences["metadatas"] or []} == expected
    assert len(sentences["ids"]) == len(set(sentences["ids"])) == FILES, "one sentence a bulletin, none twice"


def test_server_killed_mid_chat_then_back(tmp_path: Path, server: ChromaServer, embeddings: LocalEmbeddings) -> None:
    from ingest import ingest_paths
    from ui.app import ChatApp, ChatTurn

    settings = Settings(home=tmp_path / "rag", chroma_url=server.url)
    assistant = Assistant(settings, embeddings=embeddings)
    assert ingest_paths([CORPUS], settings=settings, store=assistant.store).chunks > 0
    chat = ChatApp(assistant)

    def ask(turns: list[ChatTurn], app: ChatApp = chat) -> list[ChatTurn]:
        *_, last = app.respond(QUESTION, turns, 5, "extractive")
        return last[-1]

    turns = ask([])
    assert turns[-1].answer is not None and "270" in turns[-1].answer.text

    server.kill()
    turns = ask(turns)
    error = turns[-1].error
    assert turns[-1].answer is None and error is not None
    assert error.startswith(f"Chroma server at {server.url} is unreachable") and "\n" not in error
    assert error in chat.refresh_documents()[0], "the documents panel says the same, not a traceback"
    # An app started while the server is down (as `rag chat` may be) has never connected: it reports the same.
    started_late = ChatApp(Assistant(settings, embeddings=embeddings))
    late_error = ask([], started_late)[-1].error
    assert late_error is not None and late_error.startswith(f"Chroma server at {server.url} is unreachable")

    server.start()
    late_answer = ask([], started_late)[-1].answer
    assert late_answer is not None and "270" in late_answer.text
    turns = ask(turns)
    answer = turns[-1].answer
    assert answer is not None and "270" in answer.text and answer.citations, "same app, no restart"
    for citation in answer.citations:
        document = assistant.document(citation.source)
        assert document is not None and document.text[citation.start : citation.end] == citation.quote

    # A server that comes back empty (its data lost): the cached collection handle is dropped, not reused forever.
    server.kill()
    shutil.rmtree(server.data)
    server.start()
    gone = ask(turns)[-1].error
    assert gone is not None and "is gone from" in gone and "\n" not in gone
    after = ask(turns)[-1]
    assert after.error is None or "is gone" not in after.error, "the next request uses a fresh handle"
    assert assistant.store.count() == 0
