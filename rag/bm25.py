"""A bm25s keyword index over the collection's chunks, persisted in home and rebuilt when the collection moves on."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import shutil
import threading
import time
import uuid
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.dates import chunk_date
from rag.store import Store, one_line
from rag.types import Chunk

if TYPE_CHECKING:
    import bm25s

log = logging.getLogger(__name__)

# The saved index's chunk ids, dates and openings, beside bm25s' own files.
CHUNKS_FILE = "chunks.json"

# Words that shape a question but say nothing about its topic; bm25s' own English list has only 33 words.
QUERY_STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as into about over after before between during
    is are was were be been being am do does did doing have has had having can could will would shall should may
    might must what which who whom whose when where why how many much there this that these those it its they
    them their he she his her we our you your i me my not no nor so than too very just also any some each other
    such only own same both more most few all again further then once here out up down off under
    tell say said according because kind sort type""".split()
)
# Documents keep most words (numbers and names matter); only the emptiest function words go.
DOC_STOPWORDS = frozenset(
    "a an the and or of to in on at by for with is are was were be been it its as that this".split()
)
TOKEN_RE = re.compile(r"(?u)\b\w\w+\b|\b\d\b")
ACRONYM_RE = re.compile(r"\b(?:[A-Za-z]\.){2,}")  # "U.S." -> "US", else it splits into dropped letters
# Irregular forms the Snowball stemmer leaves apart ("sent" vs "send"), so questions match the text's tense.
IRREGULAR = {
    form: base
    for base, forms in {
        "send": "sent",
        "lead": "led",
        "leave": "left",
        "take": "took taken",
        "give": "gave given",
        "make": "made",
        "say": "said",
        "tell": "told",
        "go": "went gone",
        "come": "came",
        "see": "saw seen",
        "begin": "began begun",
        "bring": "brought",
        "buy": "bought",
        "build": "built",
        "catch": "caught",
        "choose": "chose chosen",
        "drive": "drove driven",
        "fall": "fell fallen",
        "fight": "fought",
        "find": "found",
        "flee": "fled",
        "fly": "flew flown",
        "get": "got gotten",
        "grow": "grew grown",
        "hold": "held",
        "keep": "kept",
        "know": "knew known",
        "lose": "lost",
        "meet": "met",
        "pay": "paid",
        "run": "ran",
        "rise": "rose risen",
        "sell": "sold",
        "spend": "spent",
        "stand": "stood",
        "strike": "struck",
        "teach": "taught",
        "think": "thought",
        "throw": "threw thrown",
        "win": "won",
        "write": "wrote written",
        "speak": "spoke spoken",
        "break": "broke broken",
        "seek": "sought",
        "shoot": "shot",
        "lend": "lent",
        "bear": "bore borne",
        "undergo": "underwent undergone",
        "die": "dead",
        "child": "children",
        "man": "men",
        "woman": "women",
    }.items()
    for form in forms.split()
}


@cache
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def tokenize(text: str, *, drop: frozenset[str] = frozenset()) -> list[str]:
    """Lower-case word tokens, stop words dropped, Snowball-stemmed."""
    text = ACRONYM_RE.sub(lambda m: m.group().replace(".", ""), text)
    words = [IRREGULAR.get(w, w) for w in TOKEN_RE.findall(text.lower()) if w not in drop]
    return list(_stemmer().stemWords(words))


def index_text(chunk: Chunk) -> str:
    """What BM25 sees for a chunk: its title too, so a question naming the document's subject finds it."""
    return f"{chunk.title.replace('_', ' ')}\n{chunk.text}"


@lru_cache(maxsize=65_536)
def sentence_terms(text: str, spans: tuple[tuple[int, int], ...]) -> tuple[frozenset[str], ...]:
    """The stemmed terms of each sentence span (cached: the same chunks come back question after question)."""
    return tuple(frozenset(tokenize(text[start:end])) for start, end in spans)


def term_weights(terms: Sequence[str], index: BM25Index) -> dict[str, float]:
    """IDF of each query term in the collection; a term the collection never uses weighs the most."""
    n = max(len(index.ids), 1)
    weights = {}
    for term in dict.fromkeys(terms):
        df = index.document_frequency(term)
        weights[term] = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
    return weights


def coverage(weights: dict[str, float], found: frozenset[str] | set[str]) -> float:
    """Share of the query's term weight present in `found`."""
    total = sum(weights.values())
    return sum(w for t, w in weights.items() if t in found) / total if total else 0.0


@dataclass
class BM25Index:
    """A bm25s retriever over the collection's chunks, tagged with the collection revision it was built from.

    It holds only what ranking needs: the chunk ids in the retriever's order, each chunk's document date and each
    document's opening chunk. Texts and metadata stay in the store, fetched for the top candidates only.
    """

    retriever: bm25s.BM25 | None
    ids: list[str]
    revision: str
    days: np.ndarray  # date.toordinal() of each chunk's document date, 0 when undated
    openings: dict[str, str]  # source -> id of the document's first chunk (the lowest start)
    position: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.position = {chunk_id: i for i, chunk_id in enumerate(self.ids)}

    @classmethod
    def build(cls, chunks: Iterable[Chunk], revision: str) -> BM25Index:
        """Index these chunks, reading them one at a time: their texts are never all in memory at once."""
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)
        vocab: dict[str, int] = {}
        token_ids: list[array[int]] = []  # 4 bytes a token, against 8 for a list's pointer
        ids: list[str] = []
        days = array("i")
        openings: dict[str, tuple[int, str]] = {}
        for chunk in chunks:
            ids.append(chunk.id)
            day = chunk_date(chunk.metadata)
            days.append(day.toordinal() if day else 0)
            if chunk.source not in openings or chunk.start < openings[chunk.source][0]:
                openings[chunk.source] = (chunk.start, chunk.id)
            terms = tokenize(index_text(chunk), drop=DOC_STOPWORDS)
            token_ids.append(array("i", [vocab.setdefault(term, len(vocab)) for term in terms]))
        retriever = None
        if ids:
            retriever = bm25s.BM25()
            retriever.index((token_ids, vocab), show_progress=False)
        first = {source: chunk_id for source, (_, chunk_id) in openings.items()}
        return cls(retriever, ids, revision, np.asarray(days, dtype=np.int32), first)

    def document_frequency(self, term: str) -> int:
        """How many chunks contain a (stemmed) term."""
        if self.retriever is None or term not in self.retriever.vocab_dict:
            return 0
        token_id = self.retriever.vocab_dict[term]
        indptr = self.retriever.scores["indptr"]
        return int(indptr[token_id + 1] - indptr[token_id])

    def search(self, query: str, n: int) -> list[tuple[str, float]]:
        """The ids of the top n chunks with a positive BM25 score for the query, with their scores."""
        tokens = tokenize(query, drop=QUERY_STOPWORDS)
        if self.retriever is None or not tokens:
            return []
        vocab = self.retriever.vocab_dict
        tokens = [t for t in tokens if t in vocab]
        if not tokens:
            return []
        top = min(n, len(self.ids))
        indices, scores = self.retriever.retrieve([tokens], k=top, show_progress=False, n_threads=1)
        return [(self.ids[int(i)], float(s)) for i, s in zip(indices[0], scores[0], strict=True) if float(s) > 0.0]

    def mask(self, chunk_ids: Iterable[str]) -> np.ndarray:
        """A boolean array over the index marking these chunks (ids it does not hold are ignored)."""
        keep = np.zeros(len(self.ids), dtype=bool)
        keep[[i for chunk_id in chunk_ids if (i := self.position.get(chunk_id)) is not None]] = True
        return keep

    def save(self, folder: Path) -> None:
        """Write atomically: a half-written index must never be loaded, and two processes may save at once."""
        tmp = folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex[:8]}")  # per save: never shared
        tmp.mkdir(parents=True)
        try:
            if self.retriever is not None:
                self.retriever.save(str(tmp / "bm25"), show_progress=False)
            listing = {"ids": self.ids, "days": self.days.tolist(), "openings": self.openings}
            (tmp / CHUNKS_FILE).write_text(json.dumps(listing, ensure_ascii=False), encoding="utf-8")
            (tmp / "revision").write_text(self.revision, encoding="utf-8")
            # rename() cannot replace a non-empty folder: move the old one aside first. If another process
            # wins the race, its index (checked by revision on load) stands and this one is dropped.
            old = folder.with_name(f"{folder.name}.old-{uuid.uuid4().hex[:8]}")
            with contextlib.suppress(FileNotFoundError):
                folder.rename(old)
            with contextlib.suppress(OSError):
                tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path) -> BM25Index | None:
        """Read a saved index, or None when there is none; raises when it is damaged (see load_bm25).

        A folder in an older format (without CHUNKS_FILE) counts as none: it is rebuilt.
        """
        import bm25s

        if not (folder / CHUNKS_FILE).exists():
            return None
        listing = json.loads((folder / CHUNKS_FILE).read_text(encoding="utf-8"))
        ids, days = listing["ids"], np.asarray(listing["days"], dtype=np.int32)
        retriever = bm25s.BM25.load(str(folder / "bm25"), show_progress=False) if ids else None
        if retriever is not None and int(retriever.scores["num_docs"]) != len(ids):
            raise ValueError(f"{len(ids)} chunks for {retriever.scores['num_docs']} indexed documents")
        if len(days) != len(ids):
            raise ValueError(f"{len(days)} dates for {len(ids)} chunks")
        revision = (folder / "revision").read_text(encoding="utf-8")
        return cls(retriever, ids, revision, days, dict(listing["openings"]))


# Snapshots by index folder. A question reads one without any lock; a rebuild swaps in the next one when done.
_cache: dict[Path, BM25Index] = {}
_guard = threading.Lock()  # guards the two dicts below, never held while building
_build_locks: dict[Path, threading.Lock] = {}  # one build per folder at a time
_builders: dict[Path, threading.Thread] = {}
_checked: dict[Path, float] = {}  # when the serving path last asked the store for the revision
# The serving path asks the store (an HTTP call in server mode) for the revision at most this often per process.
REVISION_CHECK_S = 1.0


def index_folder(store: Store) -> Path:
    """Where the BM25 index for the store's collection lives."""
    settings = store.settings
    scope = "server" if settings.chroma_url else "local"
    return settings.home / "bm25" / scope / settings.collection


def load_bm25(store: Store, *, revision: str | None = None, wait: bool = True) -> BM25Index:
    """The BM25 index for the store, rebuilt from the collection when missing or stale.

    With wait=False (questions), a stale snapshot keeps serving while the next one is built in a background thread,
    and the revision is asked at most every REVISION_CHECK_S; only a process with no usable snapshot waits.
    """
    folder = index_folder(store)
    cached = _cache.get(folder)
    now = time.monotonic()
    if not wait and cached is not None and revision is None and now - _checked.get(folder, -1e9) < REVISION_CHECK_S:
        return cached
    current = store.revision() if revision is None else revision
    _checked[folder] = now
    if cached is not None and cached.revision == current:
        return cached
    # A collection with no revision is gone or new: its stale snapshot must not answer for it.
    if not wait and cached is not None and cached.ids and current:
        rebuild_in_background(store, folder, current)
        return cached
    return rebuild(store, folder, current)


def rebuild(store: Store, folder: Path, current: str) -> BM25Index:
    """Load the saved index for this revision, or build it from the collection and save it; then serve it."""
    with _guard:
        build_lock = _build_locks.setdefault(folder, threading.Lock())
    with build_lock:  # only builders wait here; questions keep reading the previous snapshot
        cached = _cache.get(folder)
        if cached is not None and cached.revision == current:
            return cached
        try:
            loaded = BM25Index.load(folder)
        except Exception as exc:  # any damage (truncated arrays, garbage JSON, missing files): never use it
            log.warning("BM25 index in %s is unreadable (%s): rebuilding it from the collection", folder, one_line(exc))
            loaded = None
        if loaded is None or loaded.revision != current:
            log.info("rebuilding BM25 index folder=%s revision=%s", folder, current)
            loaded = BM25Index.build(store.iter_chunks(), current)
            loaded.save(folder)
        _cache[folder] = loaded
        return loaded


def rebuild_in_background(store: Store, folder: Path, current: str) -> None:
    """Start one builder thread for the folder, unless one is running.

    It builds the revision it is given; if the collection moves on meanwhile, a later question starts the next.
    """

    def build() -> None:
        try:
            rebuild(store, folder, current)
        except Exception as exc:  # the previous snapshot keeps serving; the next question tries again
            log.warning("BM25 rebuild of %s failed (%s); serving the previous index", folder, one_line(exc))

    with _guard:
        running = _builders.get(folder)
        if running is not None and running.is_alive():
            return
        thread = threading.Thread(target=build, name=f"bm25-rebuild-{folder.name}", daemon=True)
        _builders[folder] = thread
        thread.start()
