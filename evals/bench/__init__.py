"""Benchmark scenarios. Each module in SCENARIOS has `run() -> str`, returning a Markdown section."""

SCENARIOS = ("ingest", "ask", "eval", "ui", "llm", "load", "api", "scale", "replicas", "bm25")
