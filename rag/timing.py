"""Wall-clock helpers for the timings every Answer reports."""

import time


def elapsed_ms(since: float) -> float:
    """Milliseconds since a time.perf_counter() reading, rounded for display."""
    return round((time.perf_counter() - since) * 1000, 1)
