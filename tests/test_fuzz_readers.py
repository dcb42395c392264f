"""Fuzzing every reader on generated and mutated files: a Document with exact offsets, or one LoadError line."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from fuzzing import examples, hello_pdf
from hypothesis import given
from hypothesis import strategies as st

from ingest import ingest_paths
from ingest.chunk import chunk_document
from ingest.clean import clean_document
from ingest.load import load_file
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from rag.store import Store
from rag.types import Document, LoadError

pytestmark = pytest.mark.fuzz

# Tight limits: a mutated small file needs far less, and a parser that loops is cut off (and reported) in 20 s.
LIMITS = {"max_bytes": 2**20, "timeout_s": 20.0, "memory_mb": 512}


def check_load(path: Path, data: bytes) -> Document | None:
    """Write data to path and load it: a Document whose pages, cleaning and chunks hold, or one LoadError line."""
    path.write_bytes(data)
    try:
        doc = load_file(path, **LIMITS)  # type: ignore[arg-type]
    except LoadError as exc:
        message = str(exc)
        assert message and message.isprintable() and len(message) < 400, message
        return None
    assert isinstance(doc, Document) and doc.source == str(path)
    offset = 0
    for span in doc.pages:  # pages tile the text in order
        assert span.start == offset <= span.end <= len(doc.text)
        offset = span.end
    assert not doc.pages or offset == len(doc.text)
    cleaned = clean_document(doc)
    for span in cleaned.pages:
        assert 0 <= span.start <= span.end <= len(cleaned.text)
    for chunk in chunk_document(cleaned, max_chars=300, overlap_chars=60):
        assert cleaned.text[chunk.start : chunk.end] == chunk.text
    return doc


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """seed after 1-6 random edits: flip, delete, duplicate or insert bytes, or truncate."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        size = draw(st.integers(1, 64))
        edit = draw(st.sampled_from(["flip", "delete", "duplicate", "insert", "truncate"]))
        if edit == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif edit == "delete":
            del data[at : at + size]
        elif edit == "duplicate":
            data[at:at] = data[at : at + size] * draw(st.integers(1, 50))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=size))
        else:
            del data[at:]
    return bytes(data)


def reportlab_pdf() -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4, pageCompression=0)
    pdf.setTitle("Flood report")
    for page in range(2):
        pdf.drawString(72, 800, f"Page {page + 1}. The river rose on Tuesday.")
        pdf.drawString(72, 780, "Officials said relief would arrive by helicopter.")
        pdf.showPage()
    pdf.save()
    return out.getvalue()


def word_docx() -> bytes:
    import docx

    word = docx.Document()
    word.core_properties.title = "Budget"
    word.add_heading("Budget passed", level=1)
    for text in ("The assembly passed the budget on Friday.", "Spending on schools rises by a tenth."):
        word.add_paragraph(text)
    out = io.BytesIO()
    word.save(out)
    return out.getvalue()


PDF_SEEDS = [reportlab_pdf(), hello_pdf()]
DOCX_SEED = word_docx()
HTML_SEED = (
    "<html><head><title>Flood waters rise</title><meta name='date' content='2024-05-01'></head><body>"
    "<nav><a href='/'>Home</a></nav><article><h1>Flood waters rise</h1><p>Heavy rains caused the river to burst"
    " its banks on Tuesday.</p><p>Relief supplies would be flown in.</p><table><tr><td>1</td></tr></table>"
    "</article><footer>Cookie settings</footer></body></html>"
)


@examples(30)
@given(st.one_of(*(mutated(seed) for seed in PDF_SEEDS)))
def test_mutated_pdf_loads_or_fails_in_one_line(tmp_path: Path, data: bytes) -> None:
    check_load(tmp_path / "fuzz.pdf", data)


def rezip(seed: bytes, member: str, edit: bytes) -> bytes:
    """seed (a zip) with one member's bytes replaced."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(seed)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, edit if info.filename == member else src.read(info.filename))
    return out.getvalue()


DOCUMENT_XML = zipfile.ZipFile(io.BytesIO(DOCX_SEED)).read("word/document.xml")
CORE_XML = zipfile.ZipFile(io.BytesIO(DOCX_SEED)).read("docProps/core.xml")
DOCX_CASES = st.one_of(
    mutated(DOCX_SEED),  # the zip itself
    mutated(DOCUMENT_XML).map(lambda xml: rezip(DOCX_SEED, "word/document.xml", xml)),  # valid zip, broken XML
    mutated(CORE_XML).map(lambda xml: rezip(DOCX_SEED, "docProps/core.xml", xml)),
)


@examples(30)
@given(DOCX_CASES)
def test_mutated_docx_loads_or_fails_in_one_line(tmp_path: Path, data: bytes) -> None:
    check_load(tmp_path / "fuzz.docx", data)


TAGS = ["div", "p", "article", "main", "table", "tr", "td", "script", "style", "nav", "h1", "span", "br", "meta"]
HTML_PIECES = st.one_of(
    st.sampled_from(TAGS).map(lambda t: f"<{t}>"),
    st.sampled_from(TAGS).map(lambda t: f"</{t}>"),
    st.sampled_from(["<!--", "-->", "<![CDATA[", "]]>", "&amp;", "&#0;", "&#x110000;", "&nbsp;", "<", ">", '"', "'"]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
)


@st.composite
def html_documents(draw: st.DrawFn) -> bytes:
    """Tag soup, or the article with random pieces spliced in."""
    pieces = draw(st.lists(HTML_PIECES, max_size=60))
    if draw(st.booleans()):
        return "".join(pieces).encode("utf-8")
    html = HTML_SEED
    for piece in pieces:
        at = draw(st.integers(0, len(html)))
        html = html[:at] + piece + html[at:]
    return html.encode("utf-8")


@examples(30)
@given(st.one_of(html_documents(), mutated(HTML_SEED.encode())))
def test_generated_and_mutated_html_loads_or_fails_in_one_line(tmp_path: Path, data: bytes) -> None:
    check_load(tmp_path / "fuzz.html", data)


FRONT_LINE = st.one_of(
    st.sampled_from(["title: T", "title:", ": no key", "title: 'quoted'", 'date: "2024"', "---", "--- x", "a:b:c"]),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00\n\r"), max_size=20),
)
LINE_END = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def text_files(draw: st.DrawFn) -> bytes:
    """Odd front matter (unclosed, CRLF, empty keys, a BOM, dashes in values) over odd text, or random bytes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=200))
    end = draw(LINE_END)
    lines = draw(st.lists(FRONT_LINE, max_size=6))
    head = "---" + end + end.join(lines) + (end + "---" + end if draw(st.booleans()) else end)
    body = draw(st.text(st.characters(exclude_categories=("Cs",)), max_size=300))
    heading = draw(st.sampled_from(["", "# ", "#", "# Title #", "#\t\t", "# " + " " * 50 + "x"]))
    return (draw(st.sampled_from(["", "\ufeff"])) + head + heading + end + body).encode("utf-8")


@examples(60)
@given(text_files(), st.sampled_from([".txt", ".md", ".markdown"]))
def test_text_and_markdown_with_odd_front_matter_load_or_fail_in_one_line(
    tmp_path: Path, data: bytes, suffix: str
) -> None:
    doc = check_load(tmp_path / f"fuzz{suffix}", data)
    if doc is not None:
        assert "\n" not in doc.title and all("\n" not in f"{k}{v}" for k, v in doc.metadata.items())


@examples(1)
@given(
    st.lists(
        st.one_of(
            mutated(PDF_SEEDS[0]).map(lambda d: (".pdf", d)),
            DOCX_CASES.map(lambda d: (".docx", d)),
            html_documents().map(lambda d: (".html", d)),
            text_files().map(lambda d: (".md", d)),
        ),
        min_size=4,
        max_size=8,
    )
)
def test_ingest_of_fuzzed_files_reports_each_failure_in_one_line_and_indexes_the_rest(
    tmp_path_factory: pytest.TempPathFactory, embeddings: LocalEmbeddings, files: list[tuple[str, bytes]]
) -> None:
    root = tmp_path_factory.mktemp("fuzz-ingest")
    folder = root / "docs"
    folder.mkdir()
    for number, (suffix, data) in enumerate(files):
        (folder / f"f{number:02d}{suffix}").write_bytes(data)
    (folder / "good.txt").write_text("The river rose on Tuesday. Officials sent relief by helicopter.")
    settings = Settings(home=root / "home", parse_timeout_s=20, parse_memory_mb=512)
    store = Store(settings, embeddings)
    report = ingest_paths([folder], settings=settings, store=store)
    failed = {Path(f.path).name for f in report.failed}
    assert all(f.path.isprintable() and f.error.isprintable() for f in report.failed)
    indexed = {Path(d.source).name for d in store.documents()}
    assert "good.txt" in indexed
    assert failed | indexed == {p.name for p in folder.iterdir()} and not failed & indexed
