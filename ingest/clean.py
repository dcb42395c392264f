"""Normalise whitespace and drop web boilerplate lines, without touching the words of the text itself."""

from __future__ import annotations

import re

from rag.types import Document, PageSpan

# Whole lines that web pages add around an article: comment prompts, share bars, newsletter and cookie nags.
BOILERPLATE_LINE = re.compile(
    r"""^\s*(?:
        leave\ a\ (?:reply|comment) | post\ a\ comment | cancel\ reply | \d*\s*comments? |
        share(?:\ this)?(?:\ (?:article|story|post))?:? | click\ to\ share\ on\ .{1,40} |
        print\ this\ (?:article|page) |
        related(?:\ (?:posts|articles|stories|content))?:? | you\ may\ also\ like:? | read\ more:? | see\ also:? |
        (?:subscribe|sign\ up)(?:\ (?:to|for)\ (?:our|the)\ newsletter)?\.? | follow\ us\ on\ .{1,40} |
        advertisements? | sponsored(?:\ content)? | accept\ (?:all\ )?cookies |
        this\ (?:site|website)\ uses\ cookies.{0,80} |
        post\ navigation | previous\ (?:post|article) | next\ (?:post|article) | skip\ to\ (?:main\ )?content |
        all\ rights\ reserved\.? | (?:©|\(c\)|copyright)\s.{0,60}
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
SPACES = re.compile(r"[ \t\f\v\u00a0]+")
BLANK_RUNS = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """Unify line ends and spaces, drop boilerplate lines, and trim blank runs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "").replace("\x00", "")
    lines = [SPACES.sub(" ", line).strip() for line in text.split("\n")]
    kept = [line for line in lines if not BOILERPLATE_LINE.match(line)]
    return BLANK_RUNS.sub("\n\n", "\n".join(kept)).strip()


def clean_document(doc: Document) -> Document:
    """Clean each page on its own, so page spans stay exact in the cleaned text."""
    if not doc.pages:
        return doc.model_copy(update={"text": clean_text(doc.text)})
    parts: list[str] = []
    spans: list[PageSpan] = []
    offset = 0
    for span in doc.pages:
        page_text = clean_text(doc.text[span.start : span.end])
        if not page_text:
            continue
        if parts:
            parts.append("\n\n")
            offset += 2
        parts.append(page_text)
        spans.append(PageSpan(page=span.page, start=offset, end=offset + len(page_text)))
        offset += len(page_text)
    return doc.model_copy(update={"text": "".join(parts), "pages": tuple(spans)})
