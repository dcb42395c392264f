"""Follow-up questions without an LLM: carry the salient words of earlier turns into the retrieval query."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.bm25 import QUERY_STOPWORDS, tokenize
from rag.markers import MARKER
from rag.types import Turn

# Words that lean on an earlier turn for their meaning.
REFERRING = re.compile(
    r"\b(it|its|they|them|their|theirs|he|him|his|she|her|hers|this|that|these|those|there|then|such|same|"
    r"former|latter|also|too|else|more|other|another)\b",
    re.IGNORECASE,
)
ENTITY = re.compile(r"\b[A-Z][\w’'-]*(?:\s+[A-Z][\w’'-]*)*")


def needs_context(question: str) -> bool:
    """True for questions that refer back ('it', 'they', ...) or are too short to stand alone."""
    return bool(REFERRING.search(question)) or len(tokenize(question, drop=QUERY_STOPWORDS)) <= 2


def salient_words(text: str) -> list[str]:
    """Named entities and the other content words of a turn, in order, without question words."""
    entities = [e for e in ENTITY.findall(text) if e.lower() not in QUERY_STOPWORDS]
    in_entities = {w for e in entities for w in e.split()}
    words = [
        w for w in re.findall(r"[A-Za-z][\w’'-]+", text) if w.lower() not in QUERY_STOPWORDS and w not in in_entities
    ]
    return list(dict.fromkeys([*entities, *words]))


def condense_question(question: str, history: Sequence[Turn]) -> str:
    """The retrieval query for a question in a conversation: the question plus what it refers back to."""
    if not history or not needs_context(question):
        return question
    present = {w.lower() for w in re.findall(r"[\w’'-]+", question)}
    carried: list[str] = []
    # The latest question first; older turns only add their named entities.
    for i, (earlier_question, _) in enumerate(reversed(history)):
        words = salient_words(earlier_question) if i == 0 else ENTITY.findall(earlier_question)
        carried.extend(w for w in words if w.lower() not in present and w not in carried)
    return f"{question} {' '.join(carried)}".strip()


def answer_quotes(answer: str) -> list[str]:
    """The quoted sentences of an earlier extractive answer, without their [n] marks."""
    return [q.strip() for q in MARKER.sub("\n", answer).split("\n") if len(q.strip()) > 20]
