"""Sentence spans with exact offsets, shared by chunking and extractive answers."""

from __future__ import annotations

import re

# A sentence ends at . ! or ? (plus closing quotes or brackets) followed by space and a likely sentence start.
# A run of marks is matched only from its first mark and never given back (possessive): a line of 40,000 dots
# took 70 s to split when every position in it started a fresh, backtracking attempt.
SENTENCE_END = re.compile(r"(?<![.!?])[.!?]++[\"'”’)\]]*+(?=\s+[\"'“‘(\[]?[A-Z0-9])")
ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft gen col lt sgt capt cmdr adm gov sen rep pres hon rev inc ltd co corp
    jan feb mar apr jun jul aug sep sept oct nov dec no vs etc al fig approx dept est
    u.s u.k u.n e.g i.e a.m p.m""".split()
)


def _is_abbreviation(text: str, dot: int) -> bool:
    """True when the period at `dot` closes an abbreviation or an initial rather than a sentence."""
    start = dot
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "."):
        start -= 1
    word = text[start:dot].lower()
    return word in ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences in text[start:end]; lines are never joined into one sentence."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    for line in re.finditer(r"[^\n]+", text[start:end]):
        line_start = start + line.start()
        line_text = line.group()
        cursor = 0
        for match in SENTENCE_END.finditer(line_text):
            if match.group().startswith(".") and _is_abbreviation(line_text, match.start()):
                continue
            _append_trimmed(spans, line_text, line_start, cursor, match.end())
            cursor = match.end()
        _append_trimmed(spans, line_text, line_start, cursor, len(line_text))
    return spans


def _append_trimmed(spans: list[tuple[int, int]], line: str, base: int, start: int, end: int) -> None:
    piece = line[start:end]
    stripped = piece.strip()
    if stripped:
        lead = len(piece) - len(piece.lstrip())
        spans.append((base + start + lead, base + start + lead + len(stripped)))
