"""Hypothesis profiles for the fuzz tests: a small, fixed budget in `make test`; HYPOTHESIS_PROFILE=deep in `make fuzz`."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# default: derandomized, so `make test` runs the same examples every time and cannot fail at random.
# deep: fresh random examples, DEEP_FACTOR times as many; a failure prints the example and a @reproduce_failure line.
DEEP_FACTOR = 40
settings.register_profile(
    "default",
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "deep",
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
settings.load_profile(PROFILE)


def examples(n: int) -> settings:
    """n examples in the default profile, DEEP_FACTOR * n in the deep one."""
    return settings(max_examples=n * (DEEP_FACTOR if PROFILE == "deep" else 1))
