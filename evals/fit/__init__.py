"""Fit scripts: each tuned weight or threshold of the library is refit by one of these, from dev data only."""

FITS = ("answer", "bm25", "news", "retrieval", "short_answer")
