from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from rag.bert import NumpyBert
from rag.embeddings import LocalEmbeddings, default_model_path, has_amx_bf16
from rag.text import sentence_spans

TEXTS = [
    "How many additional police officers did Kenya send to Haiti?",
    "The U.S. has been a key financial and logistical supporter of the mission, pledging over $300 million.",
    "short",
    "Ünïcödé — punctuation, dashes and numbers: 1,200 officers in 2025.",
]


def test_numpy_bert_matches_sentence_transformers(embeddings: LocalEmbeddings):
    folder = Path(default_model_path())
    assert NumpyBert.supports(folder)
    ours = NumpyBert(folder).encode(TEXTS)
    theirs = embeddings.encode_with_model(TEXTS)
    assert ours.shape == theirs.shape == (4, 384)
    assert np.abs(ours - theirs).max() < 1e-4
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_unsupported_model_folder_is_refused(tmp_path: Path):
    assert not NumpyBert.supports(tmp_path)


def test_encode_cached_returns_the_same_vectors(embeddings: LocalEmbeddings):
    first = embeddings.encode_cached(TEXTS[:2])
    again = embeddings.encode_cached([TEXTS[1], TEXTS[0]])
    assert np.array_equal(first[0], again[1]) and np.array_equal(first[1], again[0])


def test_a_question_in_a_fresh_process_does_not_import_sentence_transformers():
    code = (
        "import sys; from rag.embeddings import LocalEmbeddings; "
        "v = LocalEmbeddings().encode(['How many officers?']); "
        "print(v.shape, 'sentence_transformers' in sys.modules, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "(1, 384) False False"


def test_passage_vectors_come_from_one_pass_and_overflowing_sentences_are_encoded_alone():
    embeddings = LocalEmbeddings(precision="float32")  # same cached model; exact comparison needs one format
    filler = " ".join(f"Clause {n} adds words about the harbour, the ferry and the market." for n in range(30))
    passage = f"The ferry to Lamu leaves at dawn. {filler} The last sentence lies past the token limit."
    [vectors] = embeddings.encode_passages([passage])
    assert np.allclose(vectors.vector, embeddings.encode_with_model([passage])[0], atol=1e-5)
    assert vectors.sentences.spans == sentence_spans(passage)
    assert np.allclose(np.linalg.norm(vectors.sentences.vectors, axis=1), 1.0, atol=1e-5)
    last_start, last_end = vectors.sentences.spans[-1]
    alone = embeddings.encode_with_model([passage[last_start:last_end]])[0]
    assert np.allclose(vectors.sentences.vectors[-1], alone, atol=1e-5)  # beyond 256 tokens: encoded on its own
    first_start, first_end = vectors.sentences.spans[0]
    in_context = vectors.sentences.vectors[0]
    alone = embeddings.encode_with_model([passage[first_start:first_end]])[0]
    # Read in context (its own tokens' states), not alone, yet still about the same thing.
    assert 0.5 < float(in_context @ alone) < 0.999


def test_bfloat16_bulk_vectors_stay_within_float32s_reach():
    passages = [TEXTS[1], TEXTS[3] + " " + TEXTS[0]]
    exact = LocalEmbeddings(precision="float32").encode_passages(passages)
    fast = LocalEmbeddings(precision="bfloat16").encode_passages(passages)
    for a, b in zip(exact, fast, strict=True):
        assert float(a.vector @ b.vector) > 0.9999
        assert a.sentences.spans == b.sentences.spans
        assert (np.sum(a.sentences.vectors * b.sentences.vectors, axis=1) > 0.999).all()
    documents = LocalEmbeddings(precision="bfloat16").embed_documents(passages)
    assert float(np.dot(documents[0], exact[0].vector)) > 0.9999


def test_auto_precision_follows_the_cpus_amx_flag(tmp_path: Path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\n")
    assert has_amx_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_bf16\n")
    assert not has_amx_bf16(cpuinfo)
    assert not has_amx_bf16(tmp_path / "missing")
    assert LocalEmbeddings(precision="float32").bulk_precision == "float32"
    assert LocalEmbeddings().bulk_precision == ("bfloat16" if has_amx_bf16() else "float32")
