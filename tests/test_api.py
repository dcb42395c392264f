"""The HTTP API through real clients: the official openai client, raw httpx SSE, LangChain's ChatOpenAI.

A real uvicorn server on a free port (conftest.running_server), real Chroma, the real MiniLM model.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import running_server
from openai import APIError, OpenAI
from stub_llm import base_url, stub_llm

from rag.assistant import Assistant
from rag.embeddings import LocalEmbeddings
from rag.prompts import NOTICE_LLM_FAILED, NOTICE_UNVERIFIED
from rag.settings import Settings
from rag.types import Citation
from ui.api import REPLACED_NOTICE, create_api

QUESTION = "How many police officers did Kenya deploy to Haiti?"
BOUND_S = 120  # far beyond a healthy warm-up; only a hang reaches it
CITATION_FIELDS = set(Citation.model_fields)  # every field of the library's type, a date too once it has one


def client(url: str, key: str = "unused") -> OpenAI:
    return OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


def stored_quote(assistant: Assistant, citation: dict[str, Any]) -> str:
    text = assistant.document_text(citation["source"])
    assert text is not None
    return text[citation["start"] : citation["end"]]


def sse_events(response: httpx.Response) -> list[str]:
    """The data lines of an SSE body, in order."""
    return [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]


def test_openai_client_plain_answer_carries_verified_citations(api_url: str, seeded_assistant: Assistant) -> None:
    response = client(api_url).chat.completions.create(model="rag", messages=[{"role": "user", "content": QUESTION}])
    content = response.choices[0].message.content
    assert content and "270" in content and "[1]" in content
    extra = response.model_extra or {}
    assert extra["status"] in ("answered", "uncertain") and extra["mode"] == "extractive"
    citations = extra["citations"]
    assert citations and set(citations[0]) == CITATION_FIELDS
    for c in citations:
        assert stored_quote(seeded_assistant, c) == c["quote"], "offsets point at the quoted text"
        assert f"[{c['n']}]" in content
    direct = seeded_assistant.ask(QUESTION)
    assert content == direct.text, "the API answers what Assistant.ask answers"
    assert [c["quote"] for c in citations] == [c.quote for c in direct.citations]
    assert {"abstain_reason", "notice", "llm_error", "short_answer"} <= set(extra)


def test_openai_client_stream_joins_to_the_answer_and_ends_with_its_fields(
    api_url: str, seeded_assistant: Assistant
) -> None:
    stream = client(api_url).chat.completions.create(
        model="rag", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    chunks = list(stream)
    assert len(chunks) >= 3
    assert all(c.object == "chat.completion.chunk" and len({c.id for c in chunks}) == 1 for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    final = chunks[-1]
    assert final.choices[0].finish_reason == "stop"
    extra = final.model_extra or {}
    assert extra["replaced"] is False and extra["answer"] == text == seeded_assistant.ask(QUESTION).text
    assert extra["citations"] and all(stored_quote(seeded_assistant, c) == c["quote"] for c in extra["citations"])
    assert all(not (c.model_extra or {}).get("citations") for c in chunks[:-1]), "only the last chunk carries them"


def test_raw_sse_stream_is_well_formed(api_url: str) -> None:
    body = {"model": "rag", "messages": [{"role": "user", "content": QUESTION}], "stream": True}
    with httpx.stream("POST", f"{api_url}/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    assert {"citations", "status", "mode", "abstain_reason", "notice", "llm_error"} <= set(chunks[-1])


def test_history_from_messages_and_extra_body(api_url: str, seeded_assistant: Assistant) -> None:
    first = seeded_assistant.ask(QUESTION)
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": [{"type": "text", "text": "When did they leave?"}]},
    ]
    response = client(api_url).chat.completions.create(
        model="rag", messages=messages, extra_body={"k": 2, "mode": "extractive"}
    )
    direct = seeded_assistant.ask("When did they leave?", history=[(QUESTION, first.text)], k=2, mode="extractive")
    assert response.choices[0].message.content == direct.text


def test_langchain_chat_openai_uses_the_server_as_a_model(api_url: str) -> None:
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(base_url=f"{api_url}/v1", api_key="unused", model="rag", max_retries=0, timeout=120)  # type: ignore[arg-type]
    reply = model.invoke(QUESTION)
    assert "270" in str(reply.content) and "[1]" in str(reply.content)
    streamed = "".join(str(piece.content) for piece in model.stream(QUESTION))
    assert streamed == reply.content


def test_models_search_health_and_metrics(api_url: str, seeded_assistant: Assistant) -> None:
    models = client(api_url).models.list()
    assert [m.id for m in models.data][:1] == ["rag"] and "corpus" in [m.id for m in models.data]
    assert not any(m.id.endswith(".sentences") for m in models.data)

    hits = httpx.post(f"{api_url}/v1/search", json={"query": QUESTION, "k": 3, "method": "hybrid"}, timeout=60).json()
    expected = seeded_assistant.retrieve(QUESTION, k=3)
    assert [h["chunk_id"] for h in hits["data"]] == [c.chunk.id for c in expected]
    assert [h["rank"] for h in hits["data"]] == list(range(1, len(expected) + 1))
    assert {"bm25_rank", "bm25_score", "vector_rank", "vector_score", "fused_rank", "rerank_score"} <= set(
        hits["data"][0]
    )
    bm25 = httpx.post(f"{api_url}/v1/search", json={"query": QUESTION, "method": "bm25"}, timeout=60).json()
    assert all(h["vector_rank"] is None for h in bm25["data"])

    assert httpx.get(f"{api_url}/healthz").json() == {"status": "ok", "chunks": None}
    ready = httpx.get(f"{api_url}/readyz").json()
    assert ready["chunks"] == seeded_assistant.store.count() > 0
    metrics = httpx.get(f"{api_url}/metrics").text
    assert 'rag_http_requests_total{method="POST",route="/v1/search",status="200"}' in metrics
    assert "rag_http_request_duration_seconds_bucket" in metrics
    assert 'rag_answers_total{mode="extractive",status=' in metrics


def test_readyz_is_503_until_the_warm_up_has_ended(
    seeded_assistant: Assistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ui.app import warm_in_background
    from ui.server import create_server

    started, release = threading.Event(), threading.Event()
    real = seeded_assistant.warm_up

    def held_warm_up() -> None:  # the real warm-up, held until the test has seen the server warming
        started.set()
        release.wait(timeout=BOUND_S)
        real()

    monkeypatch.setattr(seeded_assistant, "warm_up", held_warm_up)
    warmed = warm_in_background(seeded_assistant)
    with running_server(create_server(seeded_assistant, warmed=warmed)) as url:
        assert started.wait(timeout=BOUND_S)
        early = httpx.get(f"{url}/readyz", timeout=60)
        alive = httpx.get(f"{url}/healthz", timeout=60)
        release.set()
        assert warmed.wait(timeout=BOUND_S)
        late = httpx.get(f"{url}/readyz", timeout=60)
    assert early.status_code == 503 and early.json()["error"]["code"] == "warming_up", early.text
    assert alive.status_code == 200, "liveness does not wait for the warm-up"
    assert late.status_code == 200 and late.json()["chunks"] == seeded_assistant.store.count()


def test_the_chat_is_served_at_the_root(api_url: str) -> None:
    page = httpx.get(f"{api_url}/", timeout=30)
    assert page.status_code == 200 and "gradio" in page.text.lower()
    from gradio_client import Client

    reply = Client(f"{api_url}/", verbose=False).predict(message=QUESTION, api_name="/chat")
    assert "270" in reply["answer"] and reply["citations"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": QUESTION}], "k": 0}, "k"),
        ({"messages": [{"role": "user", "content": QUESTION}], "mode": "psychic"}, "mode"),
        ({"messages": [{"role": "user", "content": QUESTION}], "as_of": "2025-13-45"}, "as_of"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "last message"),
        ({"messages": [{"role": "wizard", "content": QUESTION}]}, "role"),
        ("not json", "body"),
    ],
)
def test_bad_bodies_get_openai_style_422(api_url: str, body: Any, where: str) -> None:
    kwargs: dict[str, Any] = {"content": body, "headers": {"content-type": "application/json"}}
    if not isinstance(body, str):
        kwargs = {"json": body}
    response = httpx.post(f"{api_url}/v1/chat/completions", timeout=30, **kwargs)
    assert response.status_code == 422
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"} and error["type"] == "invalid_request_error"
    assert where in error["message"]


def test_unknown_model_is_a_404_the_openai_client_raises(api_url: str) -> None:
    from openai import NotFoundError

    with pytest.raises(NotFoundError) as raised:
        client(api_url).chat.completions.create(model="no-such", messages=[{"role": "user", "content": QUESTION}])
    assert raised.value.code == "model_not_found"


@pytest.fixture(scope="module")
def unverifiable_llm(seeded_home: Path, embeddings: LocalEmbeddings) -> Iterator[str]:
    """A server whose LLM streams an answer the sources do not back: it is replaced after its tokens went out."""
    with stub_llm("good", reply="The moon is made of green cheese [1].") as llm:
        settings = Settings(home=seeded_home, llm_base_url=base_url(llm), llm_model="stub", llm_timeout_s=30)
        with running_server(create_api(Assistant(settings, embeddings=embeddings))) as url:
            yield url


def test_stream_whose_llm_answer_fails_verification_is_replaced_unmistakably(unverifiable_llm: str) -> None:
    chunks = list(
        client(unverifiable_llm).chat.completions.create(
            model="rag", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
    )
    deltas = [c.choices[0].delta.content or "" for c in chunks]
    streamed = "".join(deltas[:-1])
    assert "green cheese" in streamed, "the rejected tokens did go out first"
    final = chunks[-1].model_extra or {}
    assert final["replaced"] is True and final["mode"] == "extractive" and final["notice"] == NOTICE_UNVERIFIED
    assert deltas[-1] == REPLACED_NOTICE + final["answer"], "the documented replacement"
    assert "".join(deltas).endswith(final["answer"]) and "green cheese" not in final["answer"]
    assert "270" in final["answer"] and final["citations"]

    plain = client(unverifiable_llm).chat.completions.create(
        model="rag", messages=[{"role": "user", "content": QUESTION}]
    )
    assert plain.choices[0].message.content == final["answer"], "a plain request never shows the rejected text"


def test_dead_llm_endpoint_falls_back_through_the_api(
    seeded_home: Path, embeddings: LocalEmbeddings, seeded_assistant: Assistant
) -> None:
    from evals.bench.load import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    settings = Settings(home=seeded_home, llm_base_url=dead, llm_model="x", llm_timeout_s=2, llm_max_retries=0)
    with running_server(create_api(Assistant(settings, embeddings=embeddings))) as url:
        response = client(url).chat.completions.create(model="rag", messages=[{"role": "user", "content": QUESTION}])
        stream = list(
            client(url).chat.completions.create(
                model="rag", messages=[{"role": "user", "content": QUESTION}], stream=True
            )
        )
    extra = response.model_extra or {}
    assert extra["mode"] == "extractive" and extra["notice"] == NOTICE_LLM_FAILED and extra["llm_error"]
    assert response.choices[0].message.content == seeded_assistant.ask(QUESTION, mode="extractive").text
    final = stream[-1].model_extra or {}
    assert final["llm_error"] and final["replaced"] is False
    assert "".join(c.choices[0].delta.content or "" for c in stream) == final["answer"]


def test_store_down_is_503_everywhere(tmp_path: Path, embeddings: LocalEmbeddings) -> None:
    from evals.bench.load import free_port

    settings = Settings(home=tmp_path / "rag", chroma_url=f"http://127.0.0.1:{free_port()}")
    with running_server(create_api(Assistant(settings, embeddings=embeddings))) as url:
        ready = httpx.get(f"{url}/readyz", timeout=60)
        body = {"messages": [{"role": "user", "content": QUESTION}]}
        plain = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
        streamed = httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": True}, timeout=60)
        with pytest.raises(APIError):
            client(url).chat.completions.create(model="rag", messages=body["messages"])  # type: ignore[arg-type]
    for response in (ready, plain, streamed):
        assert response.status_code == 503, response.text
        assert response.json()["error"]["type"] == "service_unavailable"


def test_as_of_reaches_the_assistant(api_url: str, seeded_assistant: Assistant) -> None:
    as_of = datetime.date(2025, 1, 1)  # before the corpus's only document (2025-01-18)
    response = client(api_url).chat.completions.create(
        model="rag", messages=[{"role": "user", "content": QUESTION}], extra_body={"as_of": as_of.isoformat()}
    )
    direct = seeded_assistant.ask(QUESTION, as_of=as_of)
    assert response.choices[0].message.content == direct.text
    assert (response.model_extra or {})["status"] == direct.status
    assert (response.model_extra or {})["as_of"] == direct.as_of == "2025-01-01"
