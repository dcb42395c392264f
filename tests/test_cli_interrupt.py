"""Ctrl-C anywhere in any command ends it with exit 130 and one line that says what was kept."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from signals import default_sigint

from rag.cli_support import INTERRUPTED

STARTUP_S = 120.0  # imports on a loaded machine; the wait ends as soon as the CLI is where the test needs it


def open_writer_once_read(fifo: Path, proc: subprocess.Popen[str]) -> int:
    """Wait until the CLI sleeps in read() on the FIFO, then return the writer end (held open: no EOF).

    A non-blocking writer opens only once the CLI has opened the FIFO for reading. That is not enough: a SIGINT
    that lands between its open() and its read() is handled by Python's C handler, yet the read that follows
    blocks for good (the CI run of 2026-12-02 hung 120 s). A signal that interrupts the sleeping read() always
    surfaces as KeyboardInterrupt, so wait for the kernel to report the main thread in pipe_read.
    """
    deadline = time.monotonic() + STARTUP_S
    writer = None
    while True:
        if writer is None:
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
        if writer is not None and "pipe_read" in Path(f"/proc/{proc.pid}/wchan").read_text():
            return writer
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the CLI never blocked reading --history"
        time.sleep(0.05)


def test_ctrl_c_while_a_command_waits_exits_130_with_one_line(tmp_path: Path) -> None:
    # `rag ask` blocks reading a FIFO named as --history: the signal lands inside the command, deterministically.
    fifo = tmp_path / "history.json"
    os.mkfifo(fifo)
    env = os.environ | {"RAG_HOME": str(tmp_path / "home"), "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag", "ask", "Who leads the mission?", "--history", str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=default_sigint,
    )
    writer = open_writer_once_read(fifo, proc)
    try:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=STARTUP_S)
    finally:
        os.close(writer)
    assert proc.returncode == 130, (proc.returncode, err)
    assert out == ""
    assert err.strip() == f"error: {INTERRUPTED}", "one line, no traceback"
