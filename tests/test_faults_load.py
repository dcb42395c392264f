"""Chat sessions beside a separate `rag ingest` process on one Chroma server: no errors, every citation holds.

A short, bounded version of `python -m evals.bench load` (20 sessions, 60 s, 500 files): it asserts outcomes, never
timings, so a busy machine only makes it slower.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.bench.load import run_load, write_files
from ingest.index import read_document
from ingest.load import find_files
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings

pytestmark = pytest.mark.server

SESSIONS = 5
DURATION_S = 10.0
FILES = 60


def test_chats_beside_an_ingest_have_no_errors_and_valid_citations(tmp_path: Path, embeddings: LocalEmbeddings) -> None:
    folder = write_files(tmp_path / "files", FILES)
    settings = Settings(home=tmp_path / "unused")
    expected = {c.id for path in find_files([folder]) for c in read_document(path.resolve(), settings)[1]}

    run = run_load(
        tmp_path / "load", folder, embeddings=embeddings, sessions=SESSIONS, duration_s=DURATION_S, quiet_duration_s=3
    )

    for result in (run.quiet, run.loaded):
        assert result.errors == []
        assert result.bad_citations == [] and result.citations > 0
        assert result.citation_validity == 1.0
        assert len(result.latencies_ms) >= SESSIONS, "every session answered at least once"
    assert run.ingest_error is None
    assert run.duplicates == 0
    assert run.loaded_ids == expected, "the ingest beside the chats gives exactly a quiet ingest's chunks"
    assert run.seed_ids and not run.seed_ids & run.loaded_ids
