"""Misbehaving OpenAI-compatible endpoints on 127.0.0.1, for failure injection: each one stops itself."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BEHAVIOURS = ("hang", "error500", "unauthorized", "malformed_sse", "close_midstream", "keepalive_only", "good")
# Endless and oversized answers, from a server that ignores max_tokens: the client must cut them off.
BEHAVIOURS += ("stream_forever", "ten_mb", "endless_line")
FOREVER_SENTENCE = "Kenya has deployed 270 additional police officers to Haiti [1]. "
FOREVER_PAUSE_S = 0.01  # about 100 tokens a second, a fast real server
TEN_MB = 10 * 2**20
HUGE_PIECE_CHARS = 16 * 2**10
LONGEST_HANG_S = 30.0  # a hanging handler gives up by itself even if the test forgets to stop the server


def sse_chunk(content: str | None, *, finish: str | None = None) -> bytes:
    """One chat.completion.chunk event as an OpenAI server sends it."""
    delta = {"role": "assistant", "content": content} if content is not None else {}
    body = {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "stub",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


class StubServer(ThreadingHTTPServer):
    """A threaded HTTP server whose handler misbehaves as told; `requests` counts the chat requests it saw."""

    daemon_threads = True

    def __init__(self, behaviour: str, reply: str) -> None:
        super().__init__(("127.0.0.1", 0), StubHandler)
        self.behaviour = behaviour
        self.reply = reply
        self.stopping = threading.Event()
        self.requests = 0
        self.abandoned = threading.Event()  # a client closed the connection while the reply was still coming
        self.bytes_sent = 0

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that give up and drop the connection are the point of these servers: no traceback."""


class StubHandler(BaseHTTPRequestHandler):
    """Answers POST /v1/chat/completions according to server.behaviour."""

    server: StubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet."""

    def do_POST(self) -> None:
        """Read the request, then misbehave."""
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests += 1
        getattr(self, f"reply_{self.server.behaviour}")()

    def start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def reply_hang(self) -> None:
        self.server.stopping.wait(LONGEST_HANG_S)

    def reply_json_error(self, status: int, message: str) -> None:
        body = json.dumps({"error": {"message": message, "type": "server_error", "code": status}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reply_error500(self) -> None:
        self.reply_json_error(500, "stub: internal error")

    def reply_unauthorized(self) -> None:
        self.reply_json_error(401, "stub: invalid api key")

    def reply_malformed_sse(self) -> None:
        self.start_sse()
        self.write_chunk(sse_chunk("Kenya "))
        self.write_chunk(b'data: {"choices": [{"delta": {"content": "depl\n\n')
        self.write_chunk(b"data: [DONE]\n\n")
        self.end_chunks()

    def reply_close_midstream(self) -> None:
        self.start_sse()
        for word in ("Kenya ", "has ", "deployed "):
            self.write_chunk(sse_chunk(word))
        # No terminating chunk: the connection just drops, as when a server process dies.
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def reply_keepalive_only(self) -> None:
        self.start_sse()
        while not self.server.stopping.wait(0.2):
            try:
                self.write_chunk(b": keep-alive\n\n")
            except OSError:
                return

    def reply_stream_forever(self) -> None:
        """A supported sentence, a word a piece as real servers send tokens, again and again until the client leaves."""
        self.start_sse()
        words = [sse_chunk(word + " ") for word in FOREVER_SENTENCE.split()]
        give_up = time.monotonic() + LONGEST_HANG_S
        n = 0
        while not self.server.stopping.wait(FOREVER_PAUSE_S) and time.monotonic() < give_up:
            if not self.write_or_note_abandoned(words[n % len(words)]):
                return
            n += 1

    def reply_ten_mb(self) -> None:
        """TEN_MB of answer text in 16 KB pieces, then a proper end: a server that ignores max_tokens."""
        self.start_sse()
        text = (FOREVER_SENTENCE * (HUGE_PIECE_CHARS // len(FOREVER_SENTENCE) + 1))[:HUGE_PIECE_CHARS]
        for _ in range(TEN_MB // HUGE_PIECE_CHARS):
            if self.server.stopping.is_set() or not self.write_or_note_abandoned(sse_chunk(text)):
                return
        self.write_chunk(sse_chunk(None, finish="stop"))
        self.write_chunk(b"data: [DONE]\n\n")
        self.end_chunks()

    def reply_endless_line(self) -> None:
        """One SSE event that never ends: answer text and no newline, 64 KB at a time, until the client leaves."""
        self.start_sse()
        self.write_chunk(b'data: {"choices": [{"index": 0, "delta": {"content": "')
        piece = (FOREVER_SENTENCE * (HUGE_PIECE_CHARS // len(FOREVER_SENTENCE) + 1)).encode()[: 4 * HUGE_PIECE_CHARS]
        give_up = time.monotonic() + LONGEST_HANG_S
        while not self.server.stopping.is_set() and time.monotonic() < give_up:
            if not self.write_or_note_abandoned(piece):
                return

    def write_or_note_abandoned(self, data: bytes) -> bool:
        """Write one chunk; False (and server.abandoned set) once the client has closed the connection."""
        try:
            self.write_chunk(data)
        except OSError:
            self.server.abandoned.set()
            return False
        self.server.bytes_sent += len(data)
        return True

    def reply_good(self) -> None:
        self.start_sse()
        for word in self.server.reply.split(" "):
            self.write_chunk(sse_chunk(word + " "))
        self.write_chunk(sse_chunk(None, finish="stop"))
        self.write_chunk(b"data: [DONE]\n\n")
        self.end_chunks()


@contextmanager
def stub_llm(behaviour: str, *, reply: str = "") -> Iterator[StubServer]:
    """Serve one misbehaviour on a free loopback port; `server.server_address` says where. Stops on exit."""
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour {behaviour!r}")
    server = StubServer(behaviour, reply)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def base_url(server: StubServer) -> str:
    """The OpenAI API root of a stub server."""
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/v1"
