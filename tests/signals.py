"""Child processes that take Ctrl-C even when the test run itself was started with SIGINT ignored."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """A Popen preexec_fn. A shell starts background jobs (`make test &`, nohup) with SIGINT ignored, children inherit
    that, and Python then never raises KeyboardInterrupt: a test that sends SIGINT would wait forever."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
