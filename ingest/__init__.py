"""Load, clean, chunk and index documents into the collection."""

from ingest.index import ingest_paths, remove_source

__all__ = ["ingest_paths", "remove_source"]
