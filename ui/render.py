"""HTML and Markdown for answers, sources, the retrieval inspector and the document list. Pure functions."""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from html import escape

from rag.markers import MARKER
from rag.types import Answer, Citation, Document, DocumentInfo, ShortAnswer

# The whole-document view embeds the text in the page; beyond this many characters around the quote,
# the Documents tab's reader is the place to read on.
DOC_WINDOW_CHARS = 60_000
CONTEXT_CHARS = 240


# Untrusted text (documents, model output, the user's own words) reaches the Chatbot, which renders Markdown, HTML
# and KaTeX, as text only. Gradio's sanitizer drops scripts and javascript: links but keeps <img> and ![](url), which
# the browser fetches (seen in chromium). So &, < and > become entities, and every other punctuation mark with a
# meaning in CommonMark, GFM or KaTeX gets a backslash, which also defuses autolinks (http\://, www\., a\@b).
# Marks that mean nothing there (, ; ? % / ' ") are left alone, so copied answers stay readable.
INERT = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;"} | {ch: "\\" + ch for ch in string.punctuation if ch not in "&<>,;?%/'\""}
)


def inert(text: str) -> str:
    """Text the Chatbot's Markdown shows literally: every HTML and Markdown special character escaped."""
    return text.translate(INERT)


def anchor(turn: int, n: int) -> str:
    """The element id of citation n of a conversation turn (1-based) in the Sources panel."""
    return f"src-{turn}-{n}"


def linked_text(text: str, turn: int, numbers: set[int]) -> str:
    """Answer text as inert Markdown, except that each cited [n] becomes a link to its entry in the Sources panel."""
    parts, last = [], 0
    for match in MARKER.finditer(text):
        n = int(match.group(1))
        parts.append(inert(text[last : match.start()]))
        parts.append(f"[[{n}]](#{anchor(turn, n)})" if n in numbers else inert(match.group(0)))
        last = match.end()
    parts.append(inert(text[last:]))
    return "".join(parts)


def answer_markdown(answer: Answer, turn: int) -> str:
    """The chat message for an answer: linked markers, any notice, and why it abstained; all else is text."""
    parts = []
    if answer.notice:  # a notice can quote the model's sentences
        parts.append(f"> **Note:** {inert(answer.notice)}")
    parts.append(linked_text(answer.text, turn, {c.n for c in answer.citations}))
    if answer.abstained and answer.abstain_reason:
        parts.append(f"*Why no answer: {inert(answer.abstain_reason)}*")
    if answer.citations:
        cited = " · ".join(
            f"[[{c.n}]](#{anchor(turn, c.n)}) {inert(c.title)} ({c.date or 'undated'})"
            for c in unique_by_n(answer.citations)
        )
        parts.append(f"<sub>Sources: {cited}</sub>")
    return "\n\n".join(parts)


def partial_markdown(text: str) -> str:
    """A streaming answer so far, as text, with a cursor; its markers are linked once the answer is verified."""
    return f"{inert(text)} ▌"


def question_markdown(question: str) -> str:
    """The user's question as the chat shows it: the words as typed, never rendered."""
    return inert(question)


def error_markdown(message: str) -> str:
    """A chat message for a failure the user should know about (the message can echo input or a server's words)."""
    return f"**Sorry, that failed:** {inert(message)}"


def unique_by_n(citations: Sequence[Citation]) -> list[Citation]:
    """One citation per marker number, in marker order."""
    seen: dict[int, Citation] = {}
    for citation in citations:
        seen.setdefault(citation.n, citation)
    return [seen[n] for n in sorted(seen)]


def marked(text: str, start: int, end: int, strong: ShortAnswer | None, offset: int = 0) -> str:
    """Escaped text[start:end], the short answer (at text offset + its start) in <strong> when it lies inside."""
    if strong is None:
        return escape(text[start:end])
    a, b = strong.start - offset, strong.end - offset
    if not (start <= a < b <= end and text[a:b] == strong.text):
        return escape(text[start:end])
    return f'{escape(text[start:a])}<strong class="short-answer">{escape(text[a:b])}</strong>{escape(text[b:end])}'


def highlighted(text: str, start: int, end: int, *, window: int, strong: ShortAnswer | None = None) -> str:
    """HTML of text around [start:end] with that span in <mark>, the short answer in bold; elided ends are …."""
    left, right = max(0, start - window), min(len(text), end + window)
    before = ("…" if left else "") + escape(text[left:start])
    after = escape(text[end:right]) + ("…" if right < len(text) else "")
    return f"{before}<mark>{marked(text, start, end, strong)}</mark>{after}"


def citation_meta(citation: Citation, document: Document | None) -> str:
    """Title · page · date, as plain text."""
    bits = [citation.title or citation.source]
    if citation.page is not None:
        bits.append(f"p. {citation.page}")
    # A citation made before dates existed has none of its own; the document may.
    bits.append(citation.date or (document.metadata.get("date") if document else None) or "undated")
    return " · ".join(bits)


def citation_html(
    citation: Citation, turn: int, document: Document | None, *, is_open: bool, short: ShortAnswer | None = None
) -> str:
    """One entry of the Sources panel: the quote in its context (the short answer in bold), the document on demand."""
    meta = escape(citation_meta(citation, document))
    flag = "" if citation.is_supported else '<span class="unsupported">not verified</span>'
    is_in_place = document is not None and document.text[citation.start : citation.end] == citation.quote
    if is_in_place:
        assert document is not None
        context = highlighted(document.text, citation.start, citation.end, window=CONTEXT_CHARS, strong=short)
        full = highlighted(document.text, citation.start, citation.end, window=DOC_WINDOW_CHARS, strong=short)
        reader = (
            f'<details class="doc"><summary>Read the whole document ({len(document.text):,} characters)</summary>'
            f'<div class="doc-text">{full}</div></details>'
        )
    else:  # the document text is not on this machine (another client's ingest): show the quote alone
        quote = marked(citation.quote, 0, len(citation.quote), short, offset=citation.start)
        context, reader = f"<mark>{quote}</mark>", ""
    return (
        f'<details class="cite" id="{anchor(turn, citation.n)}"{" open" if is_open else ""}>'
        f'<summary><span class="n">[{citation.n}]</span> {meta} {flag}</summary>'
        f'<div class="context">{context}</div>'
        f'<div class="where">{escape(citation.source)} · characters {citation.start}–{citation.end}</div>'
        f"{reader}</details>"
    )


def turn_sources_html(question: str, answer: Answer, turn: int, lookup: Callable[[str], Document | None]) -> str:
    """The Sources panel section for one question and its answer."""
    if answer.abstained:
        reason = escape(answer.abstain_reason or "the documents do not contain an answer")
        body = f'<div class="abstain"><b>No answer.</b> {reason}</div>'
    elif not answer.citations:
        body = '<div class="empty">This answer cites no sources.</div>'
    else:
        short = answer.short_answer
        body = "".join(
            citation_html(c, turn, lookup(c.source), is_open=i == 0, short=short if short and short.n == c.n else None)
            for i, c in enumerate(unique_by_n(answer.citations))
        )
    notice = f'<div class="notice"><b>Note:</b> {escape(answer.notice)}</div>' if answer.notice else ""
    return f'<div class="q">Q{turn}: {escape(question)}</div>{notice}{body}'


def sources_html(turns: Sequence[tuple[str, Answer | None]], lookup: Callable[[str], Document | None]) -> str:
    """The Sources panel: the latest answer's sources, then earlier turns folded away (failed turns have none)."""
    answered = [(turn, q, a) for turn, (q, a) in enumerate(turns, start=1) if a is not None]
    if not answered:
        return '<div class="sources empty">Sources of each answer appear here, with the quoted words highlighted.</div>'
    sections = []
    for turn, question, answer in reversed(answered):
        inner = turn_sources_html(question, answer, turn, lookup)
        if turn == answered[-1][0]:
            sections.append(f'<section class="turn latest">{inner}</section>')
        else:
            sections.append(
                f'<details class="turn"><summary>Earlier: Q{turn}. {escape(question)}</summary>{inner}</details>'
            )
    return f'<div class="sources">{"".join(sections)}</div>'


def fmt(value: float | int | None, digits: int = 3) -> str:
    """A rank or score for a table cell; a dash when that retriever missed the chunk."""
    if value is None:
        return "–"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def evidence_html(answer: Answer) -> str:
    """The extractive relevance and confidence against their thresholds, the status they gave, and the signals."""
    relevance, abstain_at = answer.debug.get("confidence"), answer.debug.get("threshold")
    if relevance is None or abstain_at is None:
        return ""
    graded = ""
    confidence, answer_at = answer.debug.get("answer_confidence"), answer.debug.get("answer_threshold")
    if confidence is not None and answer_at is not None:
        graded = f", confidence {confidence:.2f} against {answer_at:.2f} (RAG_ANSWER_THRESHOLD)"
    signals = (
        f"best sentence cosine {fmt(answer.debug.get('semantic'), 2)}, "
        f"key terms covered {answer.debug.get('coverage', 0.0):.0%}, "
        f"answer type {'found' if answer.debug.get('type_ok', 1.0) else 'missing'}"
    )
    return (
        f'<div class="evidence"><b>Evidence:</b> relevance {relevance:.2f} against {abstain_at:.2f} '
        f"(RAG_ABSTAIN_THRESHOLD){graded}: {escape(answer.status)} · {escape(signals)}</div>"
    )


def dates_html(answer: Answer) -> str:
    """The inspector's line on time: as of when (and why that date), the date filters, the question's time window."""
    debug = answer.debug
    if not answer.as_of:
        return ""
    bits = [f"<b>As of:</b> {escape(answer.as_of)} ({escape(str(debug.get('as_of_source', 'given')))})"]
    for key in ("since", "until"):
        if debug.get(key):
            bits.append(f"<b>{key}:</b> {escape(str(debug[key]))}")
    window = debug.get("time_window")
    bits.append(f"<b>Time window:</b> {escape(str(window))}" if window else "<b>Time window:</b> none")
    return f'<div class="dates">{" · ".join(bits)}</div>'


def inspector_html(question: str, answer: Answer) -> str:
    """The Retrieval inspector for one answer: condensed query, per-retriever ranks and scores, what was cited."""
    cited = {c.chunk_id for c in answer.citations}
    rows = []
    for rank, cand in enumerate(answer.candidates, start=1):
        chunk = cand.chunk
        snippet = chunk.text[:160] + ("…" if len(chunk.text) > 160 else "")
        rows.append(
            f'<tr class="{"cited" if chunk.id in cited else ""}">'
            f"<td>{rank}</td><td>{fmt(cand.rerank_score)}</td>"
            f"<td>{cand.fused_rank}</td><td>{fmt(cand.fused_score, 4)}</td>"
            f"<td>{fmt(cand.bm25_rank)}</td><td>{fmt(cand.bm25_score, 2)}</td>"
            f"<td>{fmt(cand.vector_rank)}</td><td>{fmt(cand.vector_score)}</td><td>{fmt(cand.window_rank)}</td>"
            f"<td>{'yes' if chunk.id in cited else ''}</td>"
            f"<td><b>{escape(chunk.title)}</b>{f' p. {chunk.page}' if chunk.page else ''}"
            f" · {escape(chunk.metadata.get('date') or 'undated')}<br>"
            f'<span class="snippet">{escape(snippet)}</span></td></tr>'
        )
    table = (
        '<table class="inspector"><thead><tr><th>rank</th><th>re-rank score</th><th>fused rank</th>'
        "<th>fused score</th><th>BM25 rank</th><th>BM25 score</th><th>vector rank</th><th>sentence cosine</th>"
        "<th>window rank</th>"
        f"<th>cited</th><th>chunk</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<div class="empty">No candidates were retrieved.</div>'
    )
    timings = ", ".join(f"{name} {ms:.0f} ms" for name, ms in answer.timings_ms.items())
    return (
        f'<div class="inspect"><div><b>Question:</b> {escape(question)}</div>'
        f"<div><b>Condensed query:</b> "
        f'<code class="condensed">{escape(answer.condensed_query or question)}</code></div>'
        f"<div><b>Mode:</b> {escape(answer.mode)}{f' · <b>Timings:</b> {escape(timings)}' if timings else ''}</div>"
        f"{dates_html(answer)}{evidence_html(answer)}{table}</div>"
    )


def documents_html(infos: Sequence[DocumentInfo]) -> str:
    """The Documents tab's table of what is in the index."""
    if not infos:
        return '<div class="empty">The index is empty. Upload documents below.</div>'
    rows = "".join(
        f"<tr><td>{escape(d.title)}</td><td><code>{escape(d.source)}</code></td><td>{d.chunks}</td>"
        f'<td class="nowrap">{escape(d.metadata.get("date", ""))}</td>'
        f'<td class="nowrap">{escape(d.ingested_at[:16].replace("T", " "))}</td></tr>'
        for d in infos
    )
    total = sum(d.chunks for d in infos)
    return (
        '<table class="documents"><thead><tr><th>title</th><th>source</th><th>chunks</th><th>date</th>'
        f"<th>ingested at (UTC)</th></tr></thead><tbody>{rows}</tbody></table>"
        f'<div class="total">{len(infos)} documents, {total} chunks</div>'
    )


def document_html(document: Document | None) -> str:
    """The Documents tab's reader: one document's whole cleaned text."""
    if document is None:
        return '<div class="empty">Pick a document to read it.</div>'
    date = document.metadata.get("date")
    return (
        f'<div class="reader"><h3>{escape(document.title)}</h3>'
        f'<div class="where">{escape(document.source)}{f" · {escape(date)}" if date else ""}'
        f" · {len(document.text):,} characters</div>"
        f'<div class="doc-text">{escape(document.text)}</div></div>'
    )


def status_html(message: str, *, kind: str) -> str:
    """A one-line status ("done" or "error") under the upload box."""
    return f'<div class="status {kind}">{escape(message)}</div>'


def upload_report_html(rows: Sequence[tuple[str, str, str]], *, chunks: int) -> str:
    """Each uploaded file's outcome (name, added/updated/duplicate/failed, detail), then the index size."""
    items = "".join(
        f'<tr><td><b>{escape(name)}</b></td><td><span class="pill {escape(status)}">{escape(status)}</span></td>'
        f"<td>{escape(detail)}</td></tr>"
        for name, status, detail in rows
    )
    failed = sum(1 for _, status, _ in rows if status == "failed")
    summary = f"{len(rows) - failed} of {len(rows)} file(s) are in the index; {chunks} chunks in all."
    return f'<table class="uploads"><tbody>{items}</tbody></table><div class="total">{summary}</div>'


def mode_badge(mode: str, model: str | None) -> str:
    """The header badge naming how answers are made."""
    if mode == "llm":
        return f'<span class="badge llm">LLM: {escape(model or "not configured")}</span>'
    return '<span class="badge extractive">Extractive (no LLM)</span>'
