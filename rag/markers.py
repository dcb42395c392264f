"""The one grammar of citation markers in answer text, and the looser forms read from a model's output.

Answer.text cites with `[n]`, one number per marker: `[2][3]` cites two sources. Every face (CLI, UI links,
metrics, follow-up condensing) reads markers with MARKER and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MARKER = re.compile(r"\[(\d{1,4})\]")
# What a model writes when it means a marker: [1, 2], [source 3], [ 2 ]. Read only where model text comes in
# (CitationFilter); what it emits is rewritten into MARKER's grammar.
LOOSE_MARKER = re.compile(r"\[\s*(?:sources?\s*)?(\d+(?:\s*,\s*(?:sources?\s*)?\d+)*)\s*\]", re.IGNORECASE)
NUMBER = re.compile(r"\d+")
# A document's own "[3]" (a footnote, or an injected fake citation) must never read as one of our markers.
LOOKALIKE_OPEN, LOOKALIKE_CLOSE = "\uff3b", "\uff3d"  # fullwidth [ and ]


def format_markers(numbers: Iterable[int]) -> str:
    """The markers for these source numbers, in order, each once: [2][3]."""
    return "".join(f"[{n}]" for n in dict.fromkeys(numbers))


def loose_numbers(marker_body: str) -> list[int]:
    """The numbers inside a LOOSE_MARKER's group: '1, source 2' -> [1, 2]."""
    return [int(n) for n in NUMBER.findall(marker_body)]


def marker_numbers(text: str) -> list[int]:
    """The source numbers of every marker in text, in order."""
    return [int(m.group(1)) for m in MARKER.finditer(text)]


def strip_markers(text: str) -> str:
    """The text without its markers, whitespace folded: what a reader or a metric sees as the words."""
    return " ".join(MARKER.sub(" ", text).split())


def quoted(text: str) -> str:
    """Document text as it may appear in Answer.text: any marker-shaped "[n]" becomes the look-alike "［n］"."""
    return MARKER.sub(lambda m: f"{LOOKALIKE_OPEN}{m.group(1)}{LOOKALIKE_CLOSE}", text)


def cite(quote: str, n: int) -> str:
    """One cited quote of an extractive answer: the quote, neutralised, then its marker."""
    return f"{quoted(quote)} [{n}]"
