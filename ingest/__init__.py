"""Load, clean, chunk and index documents into the collection."""

from ingest.index import ingest_paths

__all__ = ["ingest_paths"]
