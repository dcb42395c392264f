"""A BM25 keyword index over the collection's chunks, persisted in home and updated when the collection moves on."""

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
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from rag.dates import chunk_date
from rag.store import Store, one_line
from rag.types import Chunk

log = logging.getLogger(__name__)

# A saved index: chunk ids, sources and vocabulary as JSON, its arrays (CHUNK_ARRAYS and the postings) in one .npz.
LISTING_FILE = "index.json"
ARRAYS_FILE = "arrays.npz"
CHUNK_ARRAYS = ("lengths", "days", "starts", "source_of")

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


# The Lucene variant of BM25 (bm25s', which this index replaced; its scores are the same). b is 1.0, not the usual
# 0.75: full length normalisation ranked better on SQuAD 2.0 dev and no worse on NQ-open dev (python -m evals.fit bm25).
K1 = 1.5
B = 1.0
MAX_TF = int(np.iinfo(np.uint16).max)  # a term's count in one chunk is stored in 16 bits
# The vocabulary of deleted chunks is dropped once it is this share of all terms.
DEAD_TERMS_SHARE = 0.25


@dataclass(frozen=True)
class Postings:
    """Which chunks hold each term, term by term: docs[indptr[t]:indptr[t + 1]] (ascending), with their counts."""

    indptr: np.ndarray  # int64, one more than the vocabulary
    docs: np.ndarray  # int32 chunk positions
    tf: np.ndarray  # uint16 counts

    @classmethod
    def of_tokens(cls, terms: np.ndarray, lengths: np.ndarray, n_terms: int, *, first_doc: int = 0) -> Postings:
        """Postings of chunks whose term ids lie end to end in `terms`, lengths[i] of them for chunk first_doc + i."""
        n = max(len(lengths), 1)
        doc_of = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        pairs, counts = np.unique(terms.astype(np.int64) * n + doc_of, return_counts=True)  # sorted: term, then doc
        term_of = pairs // n
        docs = (pairs % n + first_doc).astype(np.int32)
        return cls(term_offsets(term_of, n_terms), docs, np.minimum(counts, MAX_TF).astype(np.uint16))

    def terms(self) -> np.ndarray:
        """The term of every entry, in storage order."""
        return np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int32), np.diff(self.indptr))


def term_offsets(term_of: np.ndarray, n_terms: int) -> np.ndarray:
    """The postings' indptr for entries sorted by term: where each term's entries begin."""
    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(np.bincount(term_of, minlength=n_terms), out=indptr[1:])
    return indptr


def first_chunks(
    ids: Sequence[str], source_of: np.ndarray, starts: np.ndarray, sources: Sequence[str]
) -> dict[str, str]:
    """Each source's opening chunk: the one with the lowest start."""
    if not len(ids):
        return {}
    order = np.lexsort((starts, source_of))
    grouped = source_of[order]
    first = order[np.r_[True, grouped[1:] != grouped[:-1]]]
    return {sources[source_of[i]]: ids[i] for i in first.tolist()}


@dataclass
class BM25Index:
    """A BM25 index over the collection's chunks, tagged with the collection revision it was built from.

    It holds only what ranking needs: the chunk ids, each chunk's term counts, length, document date, source and
    start. Texts and metadata stay in the store, fetched for the top candidates only. `updated` derives the next
    snapshot from this one and the chunks that changed, so a revision re-tokenises only what moved.
    """

    ids: list[str]
    revision: str
    vocab: dict[str, int]
    postings: Postings
    lengths: np.ndarray  # int32 tokens per chunk
    days: np.ndarray  # int32 date.toordinal() of each chunk's document date, 0 when undated
    starts: np.ndarray  # int32 offset of each chunk in its document
    source_of: np.ndarray  # int32 index into sources
    sources: list[str]
    position: dict[str, int] = field(init=False, repr=False)
    openings: dict[str, str] = field(init=False, repr=False)  # source -> id of the document's first chunk
    idf: np.ndarray = field(init=False, repr=False)
    norm: np.ndarray = field(init=False, repr=False)  # each chunk's length normalisation, k1 · (1 - b + b · len/avg)

    def __post_init__(self) -> None:
        self.position = {chunk_id: i for i, chunk_id in enumerate(self.ids)}
        self.openings = first_chunks(self.ids, self.source_of, self.starts, self.sources)
        df = np.diff(self.postings.indptr)
        self.idf = np.log1p((len(self.ids) - df + 0.5) / (df + 0.5)).astype(np.float32)  # as bm25s stored it
        average = float(self.lengths.mean()) if len(self.ids) else 1.0
        self.norm = K1 * (1.0 - B + B * self.lengths / (average or 1.0))

    @classmethod
    def empty(cls, revision: str = "") -> BM25Index:
        """An index of no chunks."""
        none = np.zeros(0, dtype=np.int32)
        postings = Postings(np.zeros(1, dtype=np.int64), none, np.zeros(0, dtype=np.uint16))
        return cls([], revision, {}, postings, none, none, none, none, [])

    @classmethod
    def build(cls, chunks: Iterable[Chunk], revision: str) -> BM25Index:
        """Index these chunks, reading them one at a time: their texts are never all in memory at once."""
        return cls.empty().updated((), chunks, revision)

    def updated(self, removed: Iterable[str], added: Iterable[Chunk], revision: str) -> BM25Index:
        """The next snapshot: this one without the removed chunk ids, with the added chunks (tokenised here).

        Nothing of this snapshot changes, so it keeps serving meanwhile.
        """
        keep = np.ones(len(self.ids), dtype=bool)
        keep[[at for chunk_id in removed if (at := self.position.get(chunk_id)) is not None]] = False
        kept = int(keep.sum())
        vocab = dict(self.vocab)
        codes = {source: code for code, source in enumerate(self.sources)}
        ids = [chunk_id for chunk_id, live in zip(self.ids, keep.tolist(), strict=True) if live]
        fresh_ids: set[str] = set()  # kept chunks are known by position; only the added ones need a set
        terms, lengths, days, starts, source_of = array("i"), array("i"), array("i"), array("i"), array("i")
        for chunk in added:
            at = self.position.get(chunk.id)
            if chunk.id in fresh_ids or (at is not None and keep[at]):
                continue
            fresh_ids.add(chunk.id)
            ids.append(chunk.id)
            tokens = tokenize(index_text(chunk), drop=DOC_STOPWORDS)
            terms.extend(vocab.setdefault(term, len(vocab)) for term in tokens)
            lengths.append(len(tokens))
            day = chunk_date(chunk.metadata)
            days.append(day.toordinal() if day else 0)
            starts.append(chunk.start)
            source_of.append(codes.setdefault(chunk.source, len(codes)))
        fresh = Postings.of_tokens(
            np.asarray(terms, dtype=np.int32), np.asarray(lengths, dtype=np.int64), len(vocab), first_doc=kept
        )
        # Old entries are in (term, chunk) order and renumbered in order, new chunks come after them all:
        # a stable sort by term alone gives (term, chunk) order again.
        live = keep[self.postings.docs]
        renumber = (np.cumsum(keep) - 1).astype(np.int32)
        all_terms = np.concatenate([self.postings.terms()[live], fresh.terms()])
        order = np.argsort(all_terms, kind="stable")
        postings = Postings(
            term_offsets(all_terms, len(vocab)),
            np.concatenate([renumber[self.postings.docs[live]], fresh.docs])[order],
            np.concatenate([self.postings.tf[live], fresh.tf])[order],
        )
        vocab, postings = without_dead_terms(vocab, postings)
        used, source_of_all = np.unique(
            np.concatenate([self.source_of[keep], np.asarray(source_of, dtype=np.int32)]), return_inverse=True
        )
        by_code = sorted(codes, key=codes.__getitem__)
        return BM25Index(
            ids,
            revision,
            vocab,
            postings,
            np.concatenate([self.lengths[keep], np.asarray(lengths, dtype=np.int32)]),
            np.concatenate([self.days[keep], np.asarray(days, dtype=np.int32)]),
            np.concatenate([self.starts[keep], np.asarray(starts, dtype=np.int32)]),
            source_of_all.astype(np.int32),
            [by_code[code] for code in used.tolist()],
        )

    def document_frequency(self, term: str) -> int:
        """How many chunks contain a (stemmed) term."""
        token_id = self.vocab.get(term)
        indptr = self.postings.indptr
        return 0 if token_id is None else int(indptr[token_id + 1] - indptr[token_id])

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        """Every chunk's BM25 score for these query terms (a repeated term counts again), as float32."""
        total = np.zeros(len(self.ids), dtype=np.float32)
        indptr = self.postings.indptr
        for term, times in Counter(t for t in terms if t in self.vocab).items():
            token_id = self.vocab[term]
            lo, hi = int(indptr[token_id]), int(indptr[token_id + 1])
            docs = self.postings.docs[lo:hi]
            tf = self.postings.tf[lo:hi].astype(np.float64)
            total[docs] += (times * self.idf[token_id] * tf / (tf + self.norm[docs])).astype(np.float32)
        return total

    def search(self, query: str, n: int, keep: np.ndarray | None = None) -> list[tuple[str, float]]:
        """The ids of the top n chunks with a positive BM25 score for the query, with their scores.

        `keep` (a boolean array over the index, see mask()) limits them to the chunks it marks.
        """
        tokens = tokenize(query, drop=QUERY_STOPWORDS)
        if not self.ids or not tokens or n <= 0:
            return []
        scores = self.scores(tokens)
        if keep is not None:
            scores[~keep] = 0.0
        hits = np.flatnonzero(scores > 0.0)
        if len(hits) > n:
            hits = hits[np.argpartition(-scores[hits], n - 1)[:n]]
        hits = hits[np.argsort(-scores[hits], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in hits.tolist()]

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
            terms = sorted(self.vocab, key=self.vocab.__getitem__)
            listing = {"ids": self.ids, "sources": self.sources, "terms": terms}
            (tmp / LISTING_FILE).write_text(json.dumps(listing, ensure_ascii=False), encoding="utf-8")
            arrays: dict[str, Any] = {name: getattr(self, name) for name in CHUNK_ARRAYS}
            arrays |= {"indptr": self.postings.indptr, "docs": self.postings.docs, "tf": self.postings.tf}
            np.savez(tmp / ARRAYS_FILE, **arrays)
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

        A folder in an older format (without LISTING_FILE) counts as none: it is rebuilt.
        """
        if not (folder / LISTING_FILE).exists():
            return None
        listing = json.loads((folder / LISTING_FILE).read_text(encoding="utf-8"))
        with np.load(folder / ARRAYS_FILE) as saved:
            arrays = {name: saved[name] for name in (*CHUNK_ARRAYS, "indptr", "docs", "tf")}
        ids, terms = listing["ids"], listing["terms"]
        for name in CHUNK_ARRAYS:
            if len(arrays[name]) != len(ids):
                raise ValueError(f"{len(arrays[name])} {name} for {len(ids)} chunks")
        postings = Postings(arrays.pop("indptr"), arrays.pop("docs"), arrays.pop("tf"))
        entries = int(postings.indptr[-1]) if len(postings.indptr) else -1
        if len(postings.indptr) != len(terms) + 1 or not entries == len(postings.docs) == len(postings.tf):
            raise ValueError(f"postings of {len(postings.indptr) - 1} terms for a vocabulary of {len(terms)}")
        if len(postings.docs) and int(postings.docs.max()) >= len(ids):
            raise ValueError(f"postings name chunk {int(postings.docs.max())} of {len(ids)}")
        revision = (folder / "revision").read_text(encoding="utf-8")
        vocab = {term: i for i, term in enumerate(terms)}
        return cls(ids, revision, vocab, postings, sources=listing["sources"], **arrays)


def without_dead_terms(vocab: dict[str, int], postings: Postings) -> tuple[dict[str, int], Postings]:
    """Drop the terms no chunk holds any more, once they are DEAD_TERMS_SHARE of the vocabulary."""
    df = np.diff(postings.indptr)
    alive = df > 0
    if len(vocab) - int(alive.sum()) <= DEAD_TERMS_SHARE * len(vocab):
        return vocab, postings
    renumber = np.cumsum(alive) - 1
    kept = {term: int(renumber[i]) for term, i in vocab.items() if alive[i]}
    indptr = np.zeros(len(kept) + 1, dtype=np.int64)
    np.cumsum(df[alive], out=indptr[1:])
    return kept, Postings(indptr, postings.docs, postings.tf)


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
        loaded = None
        if cached is None or saved_revision(folder) == current:  # another process of this home may have saved it
            try:
                loaded = BM25Index.load(folder)
            except Exception as exc:  # any damage (truncated arrays, garbage JSON, missing files): never use it
                log.warning(
                    "BM25 index in %s is unreadable (%s): rebuilding it from the collection", folder, one_line(exc)
                )
        if loaded is None or loaded.revision != current:
            loaded = follow(store, cached or loaded, current)
            loaded.save(folder)
        _cache[folder] = loaded
        return loaded


def saved_revision(folder: Path) -> str | None:
    """The revision of the index saved in the folder, without loading it."""
    try:
        return (folder / "revision").read_text(encoding="utf-8")
    except OSError:
        return None


def follow(store: Store, base: BM25Index | None, current: str) -> BM25Index:
    """The index of the collection now: from an older snapshot, only the chunks that changed are read and tokenised."""
    if base is None or not base.ids:
        log.info("building BM25 index of %s revision=%s", store.settings.collection, current)
        return BM25Index.build(store.iter_chunks(), current)
    present = store.chunk_ids()  # ids only: chunk ids name their content, so a changed chunk has a new id
    removed = [chunk_id for chunk_id in base.ids if chunk_id not in present]
    added = [chunk_id for chunk_id in present if chunk_id not in base.position]
    log.info(
        "updating BM25 index of %s revision=%s: %d chunks removed, %d added",
        store.settings.collection,
        current,
        len(removed),
        len(added),
    )
    return base.updated(removed, store.iter_chunks(ids=added), current)


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
