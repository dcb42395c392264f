"""Fit scripts: each tuned weight or threshold of the library is refit by one of these, from dev data only."""

FITS = ("answer", "news", "retrieval", "short_answer")
