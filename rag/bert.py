"""A NumPy forward pass of a sentence-transformers BERT model (mean pooling, normalised) for query-time embedding.

Importing sentence-transformers costs about 6 s on these CPUs (transformers' model code and scikit-learn); a
question needs one short forward pass. This reads the same safetensors weights and the same tokenizer.json, so
its vectors match the model's to float precision (tests/test_embeddings.py checks that).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def is_dense(name: str) -> bool:
    """True for the weight matrix of a linear layer (stored out x in, applied as x @ W.T)."""
    return name.endswith(".weight") and name.split(".")[-2] in ("dense", "query", "key", "value")


class NumpyBert:
    """Mean-pooled, L2-normalised sentence vectors from a BERT encoder, in NumPy."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((model_dir / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        max_length = json.loads((model_dir / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
        weights = {k.removeprefix("bert."): v for k, v in load_file(str(model_dir / "model.safetensors")).items()}
        # Dense weights transposed once into contiguous arrays: x @ W.T on a strided view skips BLAS and is 10x slower.
        self.weights = {k: np.ascontiguousarray(v.T) if is_dense(k) else v for k, v in weights.items()}
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=int(max_length))
        self.tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)))

    @classmethod
    def supports(cls, model_dir: Path) -> bool:
        """True for a BERT model with mean pooling and normalisation, the shape this class computes."""
        try:
            config = json.loads((model_dir / "config.json").read_text())
            pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
            modules = json.loads((model_dir / "modules.json").read_text())
        except (OSError, json.JSONDecodeError):
            return False
        kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
        return (
            config.get("model_type") == "bert"
            and config.get("hidden_act") == "gelu"
            and config.get("position_embedding_type", "absolute") == "absolute"
            and pooling.get("pooling_mode_mean_tokens") is True
            and not any(
                v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"
            )
            and kinds == ["Transformer", "Pooling", "Normalize"]
            and (model_dir / "model.safetensors").exists()
            and (model_dir / "tokenizer.json").exists()
        )

    def _layer_norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.weights[f"{name}.weight"] + self.weights[f"{name}.bias"]

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        flat = x.reshape(-1, x.shape[-1]) @ self.weights[f"{name}.weight"]
        return (flat + self.weights[f"{name}.bias"]).reshape(*x.shape[:-1], -1)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        from scipy.special import erf

        batch = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in batch])
        mask = np.array([e.attention_mask for e in batch], dtype=np.float32)
        w = self.weights
        x = w["embeddings.word_embeddings.weight"][ids]
        x = x + w["embeddings.position_embeddings.weight"][: ids.shape[1]]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = self._layer_norm(x, "embeddings.LayerNorm")
        n, length, width = x.shape
        head = width // self.heads
        # Padding positions get -inf-like scores so no token attends to them.
        bias = (1.0 - mask)[:, None, None, :] * -1e9
        for i in range(self.layers):
            p = f"encoder.layer.{i}"

            def split(t: np.ndarray) -> np.ndarray:
                return t.reshape(n, length, self.heads, head).transpose(0, 2, 1, 3)

            q = split(self._dense(x, f"{p}.attention.self.query"))
            k = split(self._dense(x, f"{p}.attention.self.key"))
            v = split(self._dense(x, f"{p}.attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(head) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            context = (scores / scores.sum(-1, keepdims=True)) @ v
            context = context.transpose(0, 2, 1, 3).reshape(n, length, width)
            x = self._layer_norm(
                x + self._dense(context, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm"
            )
            hidden = self._dense(x, f"{p}.intermediate.dense")
            hidden = 0.5 * hidden * (1.0 + erf(hidden / np.sqrt(2.0)))
            x = self._layer_norm(x + self._dense(hidden, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32)
