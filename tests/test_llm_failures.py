"""A broken LLM endpoint never hangs or crashes an answer: it falls back to the extractive answer within the timeout."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from stub_llm import base_url, stub_llm
from typer.testing import CliRunner

from rag.assistant import Assistant
from rag.cli import app
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from rag.types import FinalEvent, TokenEvent

QUESTION = "How many police officers did Kenya deploy to Haiti?"
TIMEOUT_S = 1.5
# Worker threads, retries' backoff and the extractive fallback (MiniLM on 2 shared cores) on top of the timeout.
SLACK_S = 6.0


def llm_assistant(home: Path, embeddings: LocalEmbeddings, url: str, *, retries: int = 0) -> Assistant:
    settings = Settings(home=home, llm_base_url=url, llm_model="stub", llm_timeout_s=TIMEOUT_S, llm_max_retries=retries)
    return Assistant(settings, embeddings=embeddings)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens here once the socket is closed


def assert_fell_back(assistant: Assistant, *, within_s: float) -> str:
    started = time.monotonic()
    answer = assistant.ask(QUESTION)
    elapsed = time.monotonic() - started
    assert elapsed < within_s, f"took {elapsed:.1f}s"
    assert answer.mode == "extractive"
    assert answer.llm_error and "\n" not in answer.llm_error
    assert answer.notice
    assert not answer.abstained and answer.citations, "the fallback is the real extractive answer"
    assert "270" in answer.text
    assert answer.to_json_dict()["llm_error"] == answer.llm_error
    return answer.llm_error


def test_endpoint_down(seeded_home: Path, embeddings: LocalEmbeddings) -> None:
    assistant = llm_assistant(seeded_home, embeddings, f"http://127.0.0.1:{closed_port()}/v1", retries=1)
    error = assert_fell_back(assistant, within_s=TIMEOUT_S + SLACK_S)
    assert "Connection" in error


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [("error500", "500"), ("unauthorized", "401"), ("malformed_sse", "LLM at"), ("close_midstream", "LLM at")],
)
def test_endpoint_misbehaves(seeded_home: Path, embeddings: LocalEmbeddings, behaviour: str, expected: str) -> None:
    with stub_llm(behaviour) as server:
        error = assert_fell_back(llm_assistant(seeded_home, embeddings, base_url(server)), within_s=TIMEOUT_S + SLACK_S)
        assert server.requests >= 1
    assert expected in error


@pytest.mark.parametrize("behaviour", ["hang", "keepalive_only"])
def test_endpoint_never_answers(seeded_home: Path, embeddings: LocalEmbeddings, behaviour: str) -> None:
    # With a retry the client alone would wait twice the timeout; the answer still comes within one.
    with stub_llm(behaviour) as server:
        assistant = llm_assistant(seeded_home, embeddings, base_url(server), retries=1)
        error = assert_fell_back(assistant, within_s=TIMEOUT_S + SLACK_S)
    assert f"no reply within {TIMEOUT_S:g}s" in error


def test_stream_from_closed_midstream_endpoint_ends_with_fallback(
    seeded_home: Path, embeddings: LocalEmbeddings
) -> None:
    with stub_llm("close_midstream") as server:
        events = list(llm_assistant(seeded_home, embeddings, base_url(server)).stream(QUESTION))
    tokens = [e.text for e in events if isinstance(e, TokenEvent)]
    assert "".join(tokens).startswith("Kenya has deployed"), "tokens that arrived were streamed as they came"
    final = events[-1]
    assert isinstance(final, FinalEvent) and final.answer.mode == "extractive" and final.answer.llm_error
    assert all(isinstance(e, TokenEvent) for e in events[:-1])


def test_good_stub_streams_and_agrees(seeded_home: Path, embeddings: LocalEmbeddings) -> None:
    reply = "Kenya has deployed 270 additional police officers to Haiti [1]. It also cites [7]."
    with stub_llm("good", reply=reply) as server:
        events = list(llm_assistant(seeded_home, embeddings, base_url(server)).stream(QUESTION))
    final = events[-1]
    assert isinstance(final, FinalEvent)
    answer = final.answer
    assert answer.mode == "llm" and answer.llm_error is None
    assert "".join(e.text for e in events if isinstance(e, TokenEvent)) == answer.text
    assert "[7]" not in answer.text and answer.debug["dropped_markers"] == [7]
    assert [c.n for c in answer.citations] == [1] and answer.citations[0].is_supported


def test_cli_reports_llm_error_in_json_and_text(seeded_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with stub_llm("error500") as server:
        monkeypatch.setenv("RAG_HOME", str(seeded_home))
        monkeypatch.setenv("RAG_LLM_BASE_URL", base_url(server))
        monkeypatch.setenv("RAG_LLM_MODEL", "stub")
        monkeypatch.setenv("RAG_LLM_MAX_RETRIES", "0")
        runner = CliRunner()
        as_json = runner.invoke(app, ["ask", QUESTION, "--json"])
        as_text = runner.invoke(app, ["ask", QUESTION, "--mode", "llm"])
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.stdout)
    assert payload["mode"] == "extractive" and "500" in payload["llm_error"]
    assert as_text.exit_code == 0, as_text.output
    assert "note:" in as_text.output and "llm error:" in as_text.output
