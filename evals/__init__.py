"""Evaluation datasets, metrics, reports and benchmarks; calls the library like any user."""
