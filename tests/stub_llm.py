"""Misbehaving OpenAI-compatible endpoints on 127.0.0.1, for failure injection: each one stops itself."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BEHAVIOURS = ("hang", "error500", "unauthorized", "malformed_sse", "close_midstream", "keepalive_only", "good")
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
