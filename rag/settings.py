"""The one typed Settings object, read from RAG_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

AnswerMode = Literal["auto", "extractive", "llm"]
EmbedPrecision = Literal["auto", "float32", "bfloat16"]
ApiScope = Literal["read", "write"]
API_SCOPES: tuple[ApiScope, ...] = ("read", "write")


class Settings(BaseSettings):
    """Everything configurable. Build it once at an entry point and pass it down."""

    # populate_by_name: Settings(llm_base_url=...) works as well as the RAG_LLM_BASE_URL / OPENAI_BASE_URL aliases.
    # hide_input_in_errors: a validation error must not print a secret (an API key) it was given.
    model_config = SettingsConfigDict(
        env_prefix="RAG_", extra="forbid", frozen=True, populate_by_name=True, hide_input_in_errors=True
    )

    # Storage
    home: Path = Field(default=Path(".rag"), description="Chroma data, ingest records and the BM25 index.")
    collection: str = Field(
        default="corpus", min_length=3, max_length=512, description="Chroma collection to read and write."
    )
    chroma_url: str | None = Field(
        default=None, description="Use the Chroma server at this URL instead of the embedded store in home/chroma."
    )

    # Embeddings
    embed_model: str | None = Field(
        default=None,
        description="Path to a local sentence-transformers model; default is the bundled all-MiniLM-L6-v2.",
    )
    embed_batch_size: int = Field(
        default=32, ge=1, description="Texts per SentenceTransformer.encode batch (smaller batches pad less)."
    )
    embed_precision: EmbedPrecision = Field(
        default="auto",
        description="Number format of bulk (ingest) encoding; auto: bfloat16 where the CPU has AMX-BF16, "
        "else float32. Questions are always encoded in float32.",
    )

    # Ingest
    chunk_chars: int = Field(default=1200, ge=100, description="Largest chunk, in characters.")
    chunk_overlap_chars: int = Field(
        default=200, ge=0, description="Characters of whole sentences repeated between neighbouring chunks."
    )
    max_file_mb: float = Field(default=50.0, gt=0, description="Files larger than this are refused at ingest.")
    max_upload_mb: float = Field(default=20.0, gt=0, description="Largest uploaded file (the chat and the API).")
    max_upload_request_mb: float = Field(
        default=200.0, gt=0, description="Largest HTTP upload request; a larger Content-Length is refused unread."
    )
    parse_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="A PDF, DOCX or HTML file whose parser runs longer than this is stopped and reported failed.",
    )
    parse_memory_mb: int = Field(
        default=2048,
        ge=64,
        description="Memory (address space) one PDF, DOCX or HTML parse may add to the parser process; "
        "a file that needs more is reported failed.",
    )

    # Retrieval
    k: int = Field(default=5, ge=1, le=100, description="Chunks handed to the answer step.")
    candidates: int = Field(
        default=100,
        ge=1,
        description="Candidates each retriever contributes before fusion; the re-ranker orders the best this many "
        "fused ones (100: news needs the depth, see BENCHMARKS.md).",
    )
    bm25_weight: float = Field(default=1.0, ge=0, description="Weight of the BM25 ranking in reciprocal rank fusion.")
    vector_weight: float = Field(
        default=0.5, ge=0, description="Weight of the vector ranking in reciprocal rank fusion."
    )
    rrf_k: int = Field(default=10, ge=1, description="The k constant of reciprocal rank fusion.")
    rerank: bool = Field(
        default=True, description="Re-rank the fused candidates by BM25 and their best sentences (hybrid only)."
    )
    window_weight: float = Field(
        default=1.0,
        ge=0,
        description="Weight in the fusion of the BM25 ranking of the documents dated in a question's time window "
        "('this week').",
    )
    window_boost: float = Field(
        default=0.3, ge=0, description="Added to the re-rank score of a candidate dated in the question's time window."
    )
    recency_days: int = Field(
        default=7,
        ge=1,
        description="Documents dated this many days up to as_of are recent, for the recency prior of a question "
        "without a time window.",
    )
    recency_weight: float = Field(
        default=0.0,
        ge=0,
        description="Weight in the fusion of the BM25 ranking of the recent documents (questions without a time "
        "window; 0: none).",
    )
    recency_boost: float = Field(
        default=0.0,
        ge=0,
        description="Added to the re-rank score of a recent candidate of a question without a time window.",
    )

    # Answers
    mode: AnswerMode = Field(
        default="auto", description="auto: use the LLM when one is configured, else extract sentences."
    )
    max_answer_sentences: int = Field(default=3, ge=1, le=10, description="Most sentences in an extractive answer.")
    answer_threshold: float = Field(
        default=0.78,
        ge=0,
        le=1,
        description="Extractive answers are `answered` when their confidence (the chance the cited sentences hold "
        "the answer) is at least this, else `uncertain`; higher hedges more. Fitted on NQ-open dev, SQuAD 2.0 and "
        "RealTimeQA (`python -m evals.fit answer`).",
    )
    abstain_threshold: float = Field(
        default=0.64,
        ge=0,
        le=1,
        description="Extractive answers abstain when their relevance (the chance the documents hold the answer at "
        "all) is below this; higher abstains more. "
        "Fitted with RAG_ANSWER_THRESHOLD; `rag eval --out` shows the trade-off on your questions.",
    )

    # LLM (any OpenAI-compatible endpoint, or a local GGUF served in-process)
    llm_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RAG_LLM_BASE_URL", "OPENAI_BASE_URL"),
        description="OpenAI-compatible endpoint; falls back to OPENAI_BASE_URL.",
    )
    llm_api_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RAG_LLM_API_KEY", "OPENAI_API_KEY"),
        description="API key for the endpoint; falls back to OPENAI_API_KEY.",
    )
    llm_model: str | None = Field(default=None, description="Model name sent to the endpoint.")
    llm_gguf: Path | None = Field(
        default=None, description="A local GGUF file, served in-process by llama.cpp (xllamacpp) on 127.0.0.1."
    )
    llm_timeout_s: float = Field(default=30.0, gt=0, description="Longest wait for the LLM, per request.")
    llm_max_retries: int = Field(default=1, ge=0, description="Retries after a failed LLM request.")
    llm_max_tokens: int = Field(
        default=384,
        ge=16,
        description="Longest generated answer, in tokens; a server that sends more is cut off by the client.",
    )
    llm_deadline_s: float = Field(
        default=120.0,
        gt=0,
        description="Longest time for one whole generated answer; a longer one is cut there and verified as is.",
    )
    llm_source_tokens: int = Field(
        default=1500,
        ge=100,
        description="Budget for source text in the answer prompt (estimated at 4 characters a token); "
        "a lean prompt keeps the time to first token low on CPU models.",
    )

    # Shared state (several replicas)
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the database holding the ingest records and document texts, shared by every "
        "replica (postgresql://user:password@host/db); default: SQLite files in home.",
    )
    write_wait_s: float = Field(
        default=600.0,
        gt=0,
        description="Longest wait for another process's write (an ingest, an upload, a delete) to the same "
        "collection in RAG_DATABASE_URL before giving up with one line.",
    )

    # HTTP API (`rag serve`)
    api_keys: SecretStr | None = Field(
        default=None,
        description="Bearer keys of the HTTP API and the chat, as comma-separated key:scope pairs "
        "(abc123:read,def456:write); read may chat, search and list, write may also upload and delete. "
        "A SecretStr: it is never shown in a repr or a log.",
    )
    api_keys_file: Path | None = Field(
        default=None, description="A file of key:scope pairs (one a line or comma-separated; # starts a comment)."
    )
    cors_origins: str | None = Field(
        default=None, description="Comma-separated origins allowed to call the API from a browser; unset: no CORS."
    )

    @field_validator("api_keys")
    @classmethod
    def _api_keys_are_pairs(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_api_keys(value.get_secret_value())  # raises on a malformed pair, naming only its position
        return value

    @property
    def is_server_mode(self) -> bool:
        """True when a Chroma server is used instead of the embedded store."""
        return self.chroma_url is not None

    @property
    def cors_origin_list(self) -> list[str]:
        """The origins of RAG_CORS_ORIGINS; empty means CORS stays off."""
        return [o.strip() for o in (self.cors_origins or "").split(",") if o.strip()]

    @property
    def is_llm_configured(self) -> bool:
        """True when an LLM endpoint or a local GGUF model is set."""
        return bool(self.llm_gguf or self.llm_base_url or self.llm_model)


def parse_api_keys(text: str) -> dict[str, ApiScope]:
    """Keys and their scopes from `key:scope` pairs, comma- or newline-separated; '#' starts a comment."""
    keys: dict[str, ApiScope] = {}
    lines = (line.split("#", 1)[0] for line in text.splitlines())
    pairs = [p.strip() for line in lines for p in line.split(",") if p.strip()]
    for number, pair in enumerate(pairs, start=1):
        key, _, scope = pair.rpartition(":")
        # The message names the pair's position, never the key itself: it ends up in logs.
        if not key or scope not in API_SCOPES:
            raise ValueError(f"API key pair {number} is not key:read or key:write")
        keys[key] = scope  # type: ignore[assignment]
    return keys
