"""Sentence-aligned chunks that keep exact character offsets into the cleaned document."""

from __future__ import annotations

import hashlib
import json

from rag.text import sentence_spans
from rag.types import Chunk, Document


def split_long(start: int, end: int, text: str, max_chars: int) -> list[tuple[int, int]]:
    """Cut a span longer than max_chars at spaces (or hard, when a word is longer still)."""
    pieces = []
    while end - start > max_chars:
        cut = text.rfind(" ", start + 1, start + max_chars)
        cut = cut if cut > start else start + max_chars
        pieces.append((start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if end > start:
        pieces.append((start, end))
    return pieces


def chunk_id(source: str, start: int, text: str, metadata: dict[str, str]) -> str:
    """Deterministic id: a hash of the source, the content and its position and metadata."""
    payload = json.dumps([source, start, text, sorted(metadata.items())], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def chunk_document(doc: Document, *, max_chars: int, overlap_chars: int) -> list[Chunk]:
    """Split doc into sentence-aligned chunks; every chunk.text == doc.text[chunk.start:chunk.end]."""
    # Overlap is counted in characters of whole sentences, not tokens: BM25 and MiniLM tokenise differently.
    units = [p for s, e in sentence_spans(doc.text) for p in split_long(s, e, doc.text, max_chars)]
    groups: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    for unit in units:
        if current and unit[1] - current[0][0] > max_chars:
            groups.append(current)
            carry: list[tuple[int, int]] = []
            for prev in reversed(current):
                if current[-1][1] - prev[0] > overlap_chars or len(carry) + 1 == len(current):
                    break
                carry.insert(0, prev)
            current = [*carry, unit] if unit[1] - (carry[0][0] if carry else unit[0]) <= max_chars else [unit]
        else:
            current.append(unit)
    if current:
        groups.append(current)
    chunks = []
    for group in groups:
        start, end = group[0][0], group[-1][1]
        text = doc.text[start:end]
        chunks.append(
            Chunk(
                id=chunk_id(doc.source, start, text, doc.metadata | {"title": doc.title}),
                source=doc.source,
                title=doc.title,
                start=start,
                end=end,
                text=text,
                page=doc.page_at(start),
                metadata=dict(doc.metadata),
            )
        )
    return chunks
