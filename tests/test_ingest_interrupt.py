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

import pytest

from ingest.index import INDEX_BATCH, read_document
from ingest.load import find_files
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from rag.store import DocumentTexts, Store

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


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_ingest_resumes_without_duplicates(tmp_path: Path, many_files: Path, stop: signal.Signals) -> None:
    home = tmp_path / "rag"
    env = os.environ | {"RAG_HOME": str(home)}
    settings = Settings(home=home)
    expected = {c.id for path in find_files([many_files]) for c in read_document(path.resolve(), settings)[1]}
    assert len(expected) == FILES

    run = subprocess.Popen(
        [RAG, "ingest", str(many_files), "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 240
        while committed_records(home) < INDEX_BATCH:
            assert run.poll() is None, f"ingest ended before the first batch was committed: {run.communicate()}"
            assert time.monotonic() < deadline, "no batch committed in time"
            time.sleep(0.05)
        run.send_signal(stop)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    committed = committed_records(home)
    assert run.returncode != 0
    assert INDEX_BATCH <= committed < FILES, "the kill must land mid-run for this test to mean anything"
    if stop == signal.SIGINT:
        assert "Traceback" not in stderr.decode(), stderr.decode()

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
