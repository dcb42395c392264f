"""`rag ingest` killed mid-run (kill -9, Ctrl-C) loses nothing committed; the rerun ends without duplicates."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from signals import default_sigint

from ingest.index import ingest_paths, read_document
from ingest.load import find_files
from rag.assistant import Assistant
from rag.cli_support import EXIT_INTERRUPTED, INTERRUPTED
from rag.corpus import INDEX_BATCH, fits, make_record_manager, recorded_keys, repair_interrupted
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from rag.store import DocumentTexts, Store
from rag.types import Document

RAG = shutil.which("rag", path=str(Path(sys.executable).parent)) or "rag"
FILES = INDEX_BATCH * 3  # one chunk each: three index batches, so a kill after the first leaves most undone
TOWNS = ["Kisumu", "Nakuru", "Eldoret", "Garissa", "Malindi", "Nyeri", "Kitale", "Voi", "Lamu", "Embu"]


def committed_records(home: Path) -> int:
    """Chunks the record manager has committed so far (0 before its table exists)."""
    try:
        with sqlite3.connect(home / "records.sqlite", timeout=5) as db:
            return int(db.execute("SELECT count(*) FROM upsertion_record").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("many")
    for n in range(FILES):
        town = TOWNS[n % len(TOWNS)]
        (folder / f"{n // 100:02d}" / f"note-{n:04d}.txt").parent.mkdir(exist_ok=True)
        (folder / f"{n // 100:02d}" / f"note-{n:04d}.txt").write_text(
            f"Bulletin {n}: the {town} water board met on day {n % 28 + 1} and approved project {n * 7919 % 10007}.\n"
        )
    return folder


def hooked_rag(*args: str, env: dict[str, str], hook: str, marker: Path) -> subprocess.Popen[bytes]:
    """`rag ARGS` in a process that touches `marker` and then blocks at `hook`, so a signal always lands there."""
    return subprocess.Popen(
        [sys.executable, "-c", HOOKS[hook], str(marker), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=default_sigint,
    )


# Failure injection: the real CLI, with one function wrapped so the process waits where the test wants the signal.
HOOKS = {
    # After the first batch is committed: the run is mid-way, and cannot finish before the signal lands.
    "first-batch": """
import sys, time, pathlib
marker = pathlib.Path(sys.argv.pop(1))
from langchain_classic.indexes import SQLRecordManager
update = SQLRecordManager.update
def update_then_wait(self, *args, **kwargs):
    update(self, *args, **kwargs)
    marker.touch()
    time.sleep(600)
SQLRecordManager.update = update_then_wait
from rag.cli import main
main()
""",
    # Inside `import torch`, which model loading starts with (seconds of real work on these machines).
    "model-loading": """
import sys, time, pathlib
marker = pathlib.Path(sys.argv.pop(1))
class WaitInTorchImport:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            marker.touch()
            time.sleep(600)
        return None
sys.meta_path.insert(0, WaitInTorchImport())
from rag.cli import main
main()
""",
}


def wait_for(marker: Path, run: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not marker.exists():
        assert run.poll() is None, f"ingest ended before reaching the hook: {run.communicate()}"
        assert time.monotonic() < deadline, "the hook was not reached in time"
        time.sleep(0.05)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_ingest_resumes_without_duplicates(tmp_path: Path, many_files: Path, stop: signal.Signals) -> None:
    home = tmp_path / "rag"
    env = os.environ | {"RAG_HOME": str(home)}
    settings = Settings(home=home)
    expected = {c.id for path in find_files([many_files]) for c in read_document(path.resolve(), settings)[1]}
    assert len(expected) == FILES

    run = hooked_rag("ingest", str(many_files), "--json", env=env, hook="first-batch", marker=tmp_path / "mid-run")
    try:
        wait_for(tmp_path / "mid-run", run)
        run.send_signal(stop)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    committed = committed_records(home)
    assert committed == INDEX_BATCH, "the signal landed after the first batch and before the second"
    if stop == signal.SIGINT:
        assert run.returncode == EXIT_INTERRUPTED
        assert stderr.decode().strip() == f"error: {INTERRUPTED}", "one line, no traceback"
    else:
        assert run.returncode == -signal.SIGKILL

    rerun = subprocess.run(
        [RAG, "ingest", str(many_files), "--json"], env=env, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["failed"] == []
    assert summary["unchanged"] >= committed, "committed work is kept, not redone"
    assert summary["added"] + summary["unchanged"] == FILES
    assert summary["chunks"] == FILES

    store = Store(settings, LocalEmbeddings())
    stored = [c.id for c in store.iter_chunks()]
    assert store.count() == len(stored) == len(set(stored)) == FILES
    assert set(stored) == expected
    assert committed_records(home) == FILES
    texts = DocumentTexts(home, settings.collection)
    sample = sorted(find_files([many_files]))[:: FILES // 5]
    assert all(texts.get(str(path.resolve())) is not None for path in sample)


def test_ctrl_c_while_the_model_loads_exits_130_with_one_line(tmp_path: Path, many_files: Path) -> None:
    home = tmp_path / "rag"
    run = hooked_rag(
        "ingest", str(many_files), env=os.environ | {"RAG_HOME": str(home)}, hook="model-loading", marker=tmp_path / "m"
    )
    try:
        wait_for(tmp_path / "m", run)
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == EXIT_INTERRUPTED
    assert stderr.decode().strip() == f"error: {INTERRUPTED}" and not stdout
    assert committed_records(home) == 0, "the signal landed before any work was committed"


SENTENCES = [
    f"Report {n}: the {town} water board approved project {n * 7919 % 10007} on day {n % 28 + 1}."
    for n, town in enumerate(TOWNS * 3)
]


def staged_state(tmp_path: Path, embeddings: LocalEmbeddings, monkeypatch: pytest.MonkeyPatch, where: str) -> Any:
    """Ingest a document, change its start (every later chunk moves), and interrupt the re-ingest at `where`."""
    folder = tmp_path / "docs"
    folder.mkdir()
    path = folder / "report.txt"
    path.write_text(" ".join(SENTENCES) + "\n", encoding="utf-8")
    settings = Settings(home=tmp_path / "rag", chunk_chars=200, chunk_overlap_chars=0)
    store = Store(settings, embeddings)
    ingest_paths([folder], settings=settings, store=store)
    path.write_text("Update: the boards merged in March. " + " ".join(SENTENCES) + "\n", encoding="utf-8")

    if where == "mid-indexing":  # the vector store wrote half of the new chunks, then Ctrl-C landed
        upsert = Store.upsert

        def upsert_half(self: Store, ids: Any, texts: Any, metadatas: Any, vectors: Any) -> None:
            half = len(ids) // 2
            upsert(self, ids[:half], texts[:half], metadatas[:half], vectors[:half])
            raise KeyboardInterrupt

        monkeypatch.setattr(Store, "upsert", upsert_half)
    else:  # every chunk indexed, old ones cleaned up, but the new text never became current

        def interrupt(self: DocumentTexts, sources: Any = None) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(DocumentTexts, "commit_staged", interrupt)
    with pytest.raises(KeyboardInterrupt):
        ingest_paths([folder], settings=settings, store=store)
    monkeypatch.undo()
    return settings, store, folder, str(path.resolve())


@pytest.mark.parametrize("where", ["mid-indexing", "before-commit"])
def test_texts_staged_by_an_interrupted_ingest_are_repaired_at_restart(
    tmp_path: Path, embeddings: LocalEmbeddings, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    settings, store, folder, source = staged_state(tmp_path, embeddings, monkeypatch, where)
    texts = DocumentTexts(settings.home, settings.collection)
    old, new = texts.get(source), texts.get(source, staged=True)
    assert old is not None and new is not None and old.text != new.text
    assert texts.staged_sources() == [source], "the interrupted run left its new text staged"
    chunks = store.chunks_of(source)
    assert all(fits(old, c) or fits(new, c) for c in chunks)
    if where == "mid-indexing":  # some chunks come from the new text, the old ones are all still there
        assert any(not fits(old, c) for c in chunks) and any(not fits(new, c) for c in chunks)
    else:
        assert all(fits(new, c) for c in chunks) and any(not fits(old, c) for c in chunks)

    assert repair_interrupted(settings, store) == [source]  # what `rag chat` and every ingest do first
    kept = texts.get(source)
    assert kept is not None and kept.text == (old.text if where == "mid-indexing" else new.text)
    after = store.chunks_of(source)
    assert after and all(fits(kept, c) for c in after), "every chunk fits the stored text again"
    assert texts.staged_sources() == []
    records = make_record_manager(settings)
    assert recorded_keys(records)[source] == {c.id for c in after}, "records agree with the store"
    answer = Assistant(settings, embeddings=embeddings).ask("Which project did the Nakuru water board approve?")
    assert answer.citations and all(kept.text[c.start : c.end] == c.quote for c in answer.citations)

    report = ingest_paths([folder], settings=settings, store=store)  # the rerun finishes the update
    final = texts.get(source)
    assert final is not None and final.text == new.text and not report.failed
    expected = {c.id for c in read_document(Path(source), settings)[1]}
    assert {c.id for c in store.chunks_of(source)} == expected and store.count() == len(expected)


def test_staged_texts_stay_beside_the_current_ones_until_committed(tmp_path: Path) -> None:
    texts = DocumentTexts(tmp_path, "notes")
    docs = [Document(source=f"/d/{n}.txt", title=f"n{n}", text=f"version one of {n}") for n in range(1200)]
    texts.put_many(docs)
    texts.stage_many([d.model_copy(update={"text": d.text.replace("one", "two")}) for d in docs])
    assert len(texts.staged_sources()) == 1200
    assert texts.get("/d/7.txt").text == "version one of 7"  # type: ignore[union-attr]
    assert texts.get("/d/7.txt", staged=True).text == "version two of 7"  # type: ignore[union-attr]
    texts.commit_staged([d.source for d in docs])  # more sources than one SQL statement takes
    assert texts.staged_sources() == [] and texts.get("/d/1199.txt").text == "version two of 1199"  # type: ignore[union-attr]
