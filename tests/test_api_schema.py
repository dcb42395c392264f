"""schemathesis against /openapi.json: no 5xx, and every response matches the schema it documents."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import LIBRARY_DOC, running_server

from rag.assistant import Assistant
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from ui.api import create_api

# Examples per operation: enough for every field's edge cases (the coverage phase adds its own), bounded in time.
EXAMPLES = 25
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.fixture
def scratch_api(tmp_path: Path, embeddings: LocalEmbeddings) -> Iterator[str]:
    """A server over its own home holding one document: the fuzzer may upload and delete there."""
    with running_server(create_api(Assistant(Settings(home=tmp_path / "rag"), embeddings=embeddings))) as url:
        added = httpx.post(f"{url}/v1/documents", files={"file": ("library.md", LIBRARY_DOC.encode())}, timeout=120)
        assert added.status_code == 200, added.text
        yield url


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(scratch_api: str, tmp_path: Path) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli, "schemathesis is in the dev extras"
    done = subprocess.run(
        [
            cli,
            "run",
            f"{scratch_api}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            "13",
            "--request-timeout",
            "120",
            "--generation-database",
            "none",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout or "passed" in done.stdout
