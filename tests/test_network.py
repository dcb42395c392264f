"""In its default configuration the project opens no network connection except to the loopback address.

The guard is a Python audit hook (it sees every socket connect, sendto and name lookup made through Python, in C
extensions too); where strace exists, the same run is also traced at the system-call level to catch native code.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
CORPUS = TESTS.parent / "corpus"
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
# Variables the test environment sets for safety; the project must be offline without them.
SAFETY_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "ANONYMIZED_TELEMETRY", "GRADIO_ANALYTICS_ENABLED")


class NetworkBlocked(ConnectionRefusedError):
    """Raised by the guard for a connection to anything but loopback."""


def is_loopback(host: object) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost names."""
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def is_allowed(address: object) -> bool:
    """Unix socket paths, and (host, port, ...) tuples whose host is loopback."""
    if isinstance(address, str | bytes):
        return True  # AF_UNIX: a path, never leaves the machine
    return isinstance(address, tuple) and bool(address) and is_loopback(address[0])


_violations: list[str] | None = None  # None: guard off


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _violations is None:
        return
    if event in ("socket.connect", "socket.sendto"):
        sock, address = args[0], args[1]
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_allowed(address):
            _violations.append(f"{event} {address!r}")
            raise NetworkBlocked(f"blocked {event} to {address!r}")
    elif event == "socket.getaddrinfo":
        host = args[0]
        if host is not None and not is_loopback(host):
            _violations.append(f"{event} {host!r}")
            raise NetworkBlocked(f"blocked name lookup of {host!r}")


def install_guard() -> list[str]:
    """Start recording (and refusing) non-loopback traffic; audit hooks cannot be removed, so this is switchable."""
    global _violations
    if not getattr(sys, "_rag_network_guard", False):
        sys.addaudithook(_audit)
        sys._rag_network_guard = True  # type: ignore[attr-defined]
    _violations = []
    return _violations


def remove_guard() -> None:
    global _violations
    _violations = None


@pytest.fixture
def guard() -> Iterator[list[str]]:
    violations = install_guard()
    try:
        yield violations
    finally:
        remove_guard()


def test_guard_refuses_outside_addresses_and_allows_loopback(guard: list[str], tmp_path: Path) -> None:
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("10.255.255.1", 80), timeout=1)
    with pytest.raises(NetworkBlocked):
        socket.getaddrinfo("example.com", 443)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp, pytest.raises(NetworkBlocked):
        udp.sendto(b"x", ("2001:db8::1", 53))
    assert len(guard) == 3 and "10.255.255.1" in guard[0]

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
        with socket.create_connection(("localhost", server.getsockname()[1]), timeout=5):
            pass
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as unix_server:
        unix_server.bind(path)
        unix_server.listen()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
    assert len(guard) == 3, guard


def default_run(home: str) -> dict[str, Any]:
    """Ingest corpus/ and answer from it with default settings, under the guard; run in a fresh process."""
    violations = install_guard()
    from ingest import ingest_paths
    from rag.assistant import Assistant
    from rag.settings import Settings

    assistant = Assistant(Settings(home=Path(home)))
    report = ingest_paths([CORPUS], settings=assistant.settings, store=assistant.store)
    hits = assistant.retrieve("How many police officers did Kenya deploy to Haiti?")
    answer = assistant.ask("How many police officers did Kenya deploy to Haiti?")
    try:  # the guard must still be live at the end, or the empty list above proves nothing
        socket.create_connection(("10.255.255.1", 80), timeout=1)
        self_check = "connected"
    except NetworkBlocked:
        self_check = "blocked"
    remove_guard()
    # For the strace check: a UDP connect() is a visible system call that sends no packet.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect(("10.255.255.1", 9))
    return {
        "violations": violations[:-1] if self_check == "blocked" else violations,
        "self_check": self_check,
        "chunks": report.chunks,
        "top_hit": hits[0].chunk.text if hits else "",
        "answer": answer.text,
        "store_mode": assistant.status()["store_mode"],
    }


def outside_connects(strace_log: str) -> list[str]:
    """connect() calls in an strace log to an IPv4/IPv6 address that is not loopback."""
    found = []
    for line in strace_log.splitlines():
        if "connect(" not in line:
            continue
        ipv4 = re.search(r'sin_addr=inet_addr\("([^"]+)"\)', line)
        ipv6 = re.search(r'inet_pton\(AF_INET6, "([^"]+)"', line)
        address = (ipv4 or ipv6).group(1) if (ipv4 or ipv6) else None
        if address is not None and not is_loopback(address) and address not in ("0.0.0.0", "::"):
            found.append(line.strip())
    return found


def test_default_configuration_talks_only_to_loopback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in SAFETY_VARIABLES and not k.startswith(("RAG_", "OPENAI_"))}
    script = (
        f"import json, sys; sys.path.insert(0, {str(TESTS)!r}); from test_network import default_run; "
        f"print('RESULT ' + json.dumps(default_run({str(tmp_path / 'rag')!r})))"
    )
    command = [sys.executable, "-c", script]
    strace = shutil.which("strace")
    trace_log = tmp_path / "strace.log"
    if strace:
        command = [strace, "-f", "-qq", "-e", "trace=connect", "-o", str(trace_log), *command]
    run = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[7:])

    assert result["self_check"] == "blocked"
    assert result["violations"] == []
    assert result["store_mode"] == "embedded"
    assert result["chunks"] > 0
    assert "270" in result["top_hit"]
    assert "270" in result["answer"]
    if strace:
        log = trace_log.read_text()
        assert "10.255.255.1" in log, "strace must see the UDP self-check connect, so it would see others"
        outside = [line for line in outside_connects(log) if "10.255.255.1" not in line]
        assert outside == [], outside


def test_strace_parser_flags_only_outside_addresses() -> None:
    log = "\n".join(
        [
            '7 connect(5, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("140.82.112.3")}, 16) = 0',
            '7 connect(5, {sa_family=AF_INET, sin_port=htons(8000), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
            '7 connect(6, {sa_family=AF_INET6, sin6_port=htons(80), inet_pton(AF_INET6, "::1", &sin6_addr)}, 28) = 0',
            '7 connect(6, {sa_family=AF_INET6, sin6_port=htons(80), inet_pton(AF_INET6, "2606:4700::1", &x)}, 28) = 0',
            '7 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT',
        ]
    )
    outside = outside_connects(log)
    assert len(outside) == 2
    assert "140.82.112.3" in outside[0] and "2606:4700::1" in outside[1]
