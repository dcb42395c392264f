"""A generated answer through the API, from the local SmolLM2 model server (RAG_LLM_GGUF).

The tiny model is often wrong, so this checks the protocol: verified citations, or a documented replacement.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import running_server
from openai import OpenAI
from test_llm_real import GGUF, LLM_SETTINGS, QUESTION

from rag.assistant import Assistant
from rag.embeddings import LocalEmbeddings
from rag.llm import stop_local_servers
from rag.prompts import NOTICE_UNVERIFIED
from rag.settings import Settings
from ui.api import REPLACED_NOTICE, create_api

pytestmark = pytest.mark.llm


@pytest.fixture(scope="module")
def llm_api(seeded_home: Path, embeddings: LocalEmbeddings) -> Iterator[tuple[str, Assistant]]:
    assert GGUF.is_file()
    assistant = Assistant(Settings(home=seeded_home, **LLM_SETTINGS), embeddings=embeddings)  # type: ignore[arg-type]
    try:
        with running_server(create_api(assistant)) as url:
            yield url, assistant
    finally:
        stop_local_servers()


def test_llm_answer_through_the_api(llm_api: tuple[str, Assistant]) -> None:
    url, assistant = llm_api
    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)
    messages = [{"role": "user", "content": QUESTION}]
    plain = client.chat.completions.create(model="rag", messages=messages, extra_body={"mode": "llm"})  # type: ignore[arg-type]
    extra = plain.model_extra or {}
    assert extra["mode"] in ("llm", "extractive")
    if extra["mode"] == "extractive":  # the model's answer failed verification: the extractive one replaced it
        assert extra["notice"] == NOTICE_UNVERIFIED
    for c in extra["citations"]:
        assert assistant.document_text(c["source"])[c["start"] : c["end"]] == c["quote"]  # type: ignore[index]

    chunks = list(client.chat.completions.create(model="rag", messages=messages, stream=True))  # type: ignore[call-overload]
    deltas = [c.choices[0].delta.content or "" for c in chunks]
    final = chunks[-1].model_extra or {}
    joined = "".join(deltas)
    assert joined.endswith(final["answer"])
    if final["replaced"]:
        assert deltas[-1] == REPLACED_NOTICE + final["answer"] and final["mode"] == "extractive"
    else:
        assert joined == final["answer"]
