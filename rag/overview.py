"""Questions about the corpus itself ('what documents do you have?'), answered from the document list."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.prompts import CORPUS_OVERVIEW, NO_DOCUMENTS
from rag.text import sentence_spans
from rag.types import Chunk, Citation, DocumentInfo

CORPUS_QUESTION = re.compile(
    r"^\s*(?:"
    r"what (?:documents|docs|files|sources|articles|texts|reports)\b.*|"
    r"(?:which|list(?: all)?(?: the| your)?) (?:documents|docs|files|sources|articles)\b.*|"
    r"what (?:is|are) (?:this|these|the) (?:corpus|collection|documents?|files?|articles?|sources?)(?: about)?\b.*|"
    r"what (?:is|are) (?:this|it|they) about\b.*|"
    r"what (?:do you know|can you (?:tell me|answer|help)(?: about| with)?)\s*\??|"
    r"what (?:topics|subjects) (?:do you|does this|are)\b.*|"
    r"(?:give me an? )?(?:overview|summary) of (?:the|your|these) (?:documents|corpus|collection|files)\b.*|"
    r"how many (?:documents|docs|files|articles|sources) (?:do you have|are (?:there|indexed))\b.*"
    r")$",
    re.IGNORECASE,
)
MAX_LISTED = 20


def is_corpus_question(question: str) -> bool:
    """True when the question asks about the indexed collection rather than its contents."""
    return bool(CORPUS_QUESTION.match(question.strip()))


def describe(info: DocumentInfo) -> str:
    """'Title' (date, kind, N chunks)."""
    details = [info.metadata[k] for k in ("date", "dateline", "kind") if info.metadata.get(k)]
    details.append(f"{info.chunks} chunk{'s' if info.chunks != 1 else ''}")
    return f"“{info.title}” ({', '.join(details)})"


def overview_answer(documents: Sequence[DocumentInfo], first_chunks: dict[str, Chunk]) -> tuple[str, list[Citation]]:
    """List the documents, each with its opening sentence cited as a summary of what it is about."""
    if not documents:
        return NO_DOCUMENTS, []
    lines = [CORPUS_OVERVIEW.format(count=len(documents))]
    citations: list[Citation] = []
    for info in documents[:MAX_LISTED]:
        line = f"- {describe(info)}"
        chunk = first_chunks.get(info.source)
        spans = sentence_spans(chunk.text) if chunk else []
        if chunk and spans:
            start, end = spans[0]
            n = len(citations) + 1
            citations.append(Citation.of_span(n, chunk, start, end))
            line += f": {chunk.text[start:end]} [{n}]"
        lines.append(line)
    if len(documents) > MAX_LISTED:
        lines.append(f"- … and {len(documents) - MAX_LISTED} more.")
    return "\n".join(lines), citations
