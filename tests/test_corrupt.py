"""Damaged local files in RAG_HOME: each is found at start-up with one line, replaced or rebuilt, never used as is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CORPUS

from rag.bm25 import ARRAYS_FILE, LISTING_FILE
from rag.store import DocumentTexts

RAG = shutil.which("rag", path=str(Path(sys.executable).parent)) or "rag"
QUESTION = "How many additional police officers did Kenya send to Haiti?"


def rag(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RAG, *args], env=os.environ | {"RAG_HOME": str(home)} | env, capture_output=True, text=True, timeout=300
    )


def damage(path: Path, how: str) -> None:
    """Cut a file to a third of its length, or overwrite it with bytes that are no known format."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if how == "truncate" else b"\x13garbage\x00" * 64)


def assert_answers(home: Path) -> list[str]:
    """`rag ask` still answers with a verified citation; returns its stderr lines."""
    asked = rag("ask", QUESTION, "--json", home=home)
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert "270" in answer["answer"] and answer["citations"]
    assert all(c["quote"] in answer["answer"] for c in answer["citations"])
    assert "Traceback" not in asked.stderr
    return asked.stderr.splitlines()


@pytest.fixture
def home(seeded_home: Path, tmp_path: Path) -> Path:
    target = tmp_path / "rag"
    shutil.copytree(seeded_home, target)
    return target


@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_damaged_bm25_index_is_rebuilt_from_the_collection(home: Path, how: str) -> None:
    folder = home / "bm25" / "local" / "corpus"
    damage(folder / (LISTING_FILE if how == "truncate" else ARRAYS_FILE), how)
    lines = assert_answers(home)
    assert len(lines) == 1 and lines[0].startswith("WARNING rag.bm25: BM25 index in "), lines
    assert "is unreadable" in lines[0] and "rebuilding it from the collection" in lines[0]
    assert assert_answers(home) == [], "the rebuilt index was saved: no warning the second time"


@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_damaged_documents_db_is_moved_aside_and_reingest_restores_it(home: Path, how: str) -> None:
    damage(home / "documents.sqlite", how)
    lines = assert_answers(home)  # quotes are checked against the chunks meanwhile
    assert len(lines) == 1 and "documents.sqlite is corrupt" in lines[0], lines
    assert "cannot be rebuilt exactly" in lines[0] and "re-ingest" in lines[0]
    assert len(list(home.glob("documents.sqlite.corrupt-*"))) == 1

    again = rag("ingest", str(CORPUS), "--json", home=home, RAG_EMBED_MODEL="/no/such/model")
    assert again.returncode == 0 and json.loads(again.stdout)["added"] == 0, again.stderr
    source = str(next(CORPUS.iterdir()).resolve())
    restored = DocumentTexts(home, "corpus").get(source)
    assert restored is not None and "270" in restored.text
    assert assert_answers(home) == []


@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_damaged_records_db_is_rebuilt_from_the_collection_without_embedding(home: Path, how: str) -> None:
    chunks = json.loads(rag("status", "--json", home=home).stdout)["chunks"]
    damage(home / "records.sqlite", how)
    # No model can load: the run must rebuild the records from chunk metadata and find every file unchanged.
    again = rag("ingest", str(CORPUS), "--json", home=home, RAG_EMBED_MODEL="/no/such/model")
    assert again.returncode == 0, again.stderr
    lines = again.stderr.splitlines()
    assert len(lines) == 1 and "records.sqlite is corrupt" in lines[0], lines
    assert f"rebuilt {chunks} records of collection corpus from its chunks" in lines[0]
    summary = json.loads(again.stdout)
    assert (summary["added"], summary["unchanged"], summary["deleted"], summary["chunks"]) == (0, chunks, 0, chunks)
    assert len(list(home.glob("records.sqlite.corrupt-*"))) == 1
    assert assert_answers(home) == []


def test_concurrent_bm25_saves_leave_one_whole_index(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from rag.bm25 import BM25Index
    from rag.types import Chunk

    chunks = [
        Chunk(id=f"c{n}", source="s", title="t", start=0, end=len(text), text=text)
        for n, text in enumerate(f"water board {n} approved project {n * 31}" for n in range(50))
    ]
    folder = tmp_path / "bm25" / "local" / "corpus"
    with ThreadPoolExecutor(8) as pool:  # the same race as two processes saving after two ingests
        list(pool.map(lambda rev: BM25Index.build(chunks, f"rev-{rev}").save(folder), range(16)))
    loaded = BM25Index.load(folder)
    assert loaded is not None and loaded.revision.startswith("rev-") and len(loaded.ids) == 50
    assert [chunk_id for chunk_id, _ in loaded.search("project 62", 1)] == ["c2"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["corpus"], "no half-written folders left behind"
