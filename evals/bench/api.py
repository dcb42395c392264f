"""Benchmark: `rag serve`'s /v1/chat/completions at 1, 10 and 50 clients, against Assistant.ask and Gradio's /chat."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from evals.bench.load import free_port, wait_for
from evals.bench.ui import QUESTIONS, percentile

REPO = Path(__file__).resolve().parents[2]
# (clients, requests per client): every loop is bounded by a count; about 30-200 answers per level.
LEVELS = ((1, 30), (10, 10), (50, 4))
ROUNDS = 2  # in-process and plain HTTP take turns within each level
GRADIO_LEVELS = ((1, 10), (10, 3))
SOAK_CLIENTS = 50
SOAK_S = 60.0
SOAK_MAX_PER_CLIENT = 10_000  # a bound on the loop even if the clock misbehaves
TIMEOUT_S = 300.0
SETTLE_MAX_S = 60  # seconds to wait at most for the started server to idle
SETTLE_IDLE_MS = 200  # CPU ms in one second below which it counts as idle (it idles at about 50)


@dataclass
class Level:
    """Latencies (ms) of one concurrency level and its wall time."""

    latencies: list[float]
    wall_s: float
    errors: int = 0
    first_bytes: tuple[float, ...] = ()

    @property
    def throughput(self) -> float:
        """Answers per second."""
        return len(self.latencies) / self.wall_s

    def merge(self, other: Level) -> Level:
        """Both runs of a level as one."""
        return Level(
            self.latencies + other.latencies,
            self.wall_s + other.wall_s,
            self.errors + other.errors,
            self.first_bytes + other.first_bytes,
        )

    def p(self, q: float) -> float:
        """The q-th percentile latency."""
        return percentile(self.latencies, q)


def at_once(clients: int, per_client: int, work: Callable[[int, int], tuple[float, float | None]]) -> Level:
    """Run work(client, i) per_client times in each of `clients` threads, all started together."""
    start = threading.Barrier(clients + 1)

    def client(n: int) -> list[tuple[float, float | None]]:
        start.wait()
        return [work(n, i) for i in range(per_client)]

    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(client, n) for n in range(clients)]
        start.wait()
        started = time.perf_counter()
        results = [r for f in futures for r in f.result()]
        wall = time.perf_counter() - started
    return Level([r[0] for r in results], wall, first_bytes=tuple(r[1] for r in results if r[1] is not None))


def chat_body(question: str, *, stream: bool) -> dict[str, object]:
    """A completion request for one question."""
    return {"model": "rag", "messages": [{"role": "user", "content": question}], "stream": stream}


def plain_request(client: httpx.Client, question: str) -> tuple[float, None]:
    """One non-streaming completion; its latency."""
    started = time.perf_counter()
    response = client.post("/v1/chat/completions", json=chat_body(question, stream=False))
    response.raise_for_status()
    assert response.json()["citations"] is not None
    return (time.perf_counter() - started) * 1000, None


def stream_request(client: httpx.Client, question: str) -> tuple[float, float]:
    """One streamed completion read to [DONE]: its latency and time to the first byte of the body."""
    started = time.perf_counter()
    first: float | None = None
    last = ""
    with client.stream("POST", "/v1/chat/completions", json=chat_body(question, stream=True)) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if first is None:
                first = (time.perf_counter() - started) * 1000
            if line.startswith("data: "):
                last = line
    if last != "data: [DONE]":
        raise RuntimeError(f"stream ended without [DONE]: {last[:200]!r}")
    return (time.perf_counter() - started) * 1000, first or 0.0


def http_level(url: str, clients: int, per_client: int, *, stream: bool) -> Level:
    """One level of plain or streaming requests, one keep-alive connection per client."""
    pool = [httpx.Client(base_url=url, timeout=TIMEOUT_S) for _ in range(clients)]
    request = stream_request if stream else plain_request
    try:
        return at_once(clients, per_client, lambda n, i: request(pool[n], QUESTIONS[(n + i) % len(QUESTIONS)]))
    finally:
        for c in pool:
            c.close()


def soak(url: str) -> tuple[int, int, list[str]]:
    """SOAK_CLIENTS streaming clients for SOAK_S seconds: (answers, errors, first error messages)."""
    deadline = time.monotonic() + SOAK_S
    errors: list[str] = []
    done = [0] * SOAK_CLIENTS

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=TIMEOUT_S) as http:
            for i in range(SOAK_MAX_PER_CLIENT):
                if time.monotonic() >= deadline:
                    return
                try:
                    stream_request(http, QUESTIONS[(n + i) % len(QUESTIONS)])
                    done[n] += 1
                except Exception as exc:  # counted, not raised: the target is zero of them
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(SOAK_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done), len(errors), errors[:3]


def run() -> str:
    """Serve the seed corpus with `rag serve` in its own process; drive it; compare with the library in this one."""
    from ingest import ingest_paths
    from rag.assistant import Assistant
    from rag.embeddings import LocalEmbeddings
    from rag.settings import Settings

    with tempfile.TemporaryDirectory(prefix="rag-bench-api-") as tmp:
        # Two homes with the same index: embedded Chroma is single-process, and the server owns its home.
        mine, served = Path(tmp) / "library", Path(tmp) / "served"
        assistant = Assistant(Settings(home=mine, mode="extractive"), embeddings=LocalEmbeddings())
        ingest_paths([REPO / "corpus"], settings=assistant.settings, store=assistant.store)
        shutil.copytree(mine, served)
        assistant.warm_up()
        for q in QUESTIONS:
            assistant.ask(q)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
        env |= {"RAG_HOME": str(served), "RAG_MODE": "extractive", "GRADIO_ANALYTICS_ENABLED": "False"}
        log = (Path(tmp) / "server.log").open("wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "rag", "serve", "--port", str(port), "--corpus", str(Path(tmp) / "none")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(f"{url}/readyz", timeout_s=180, process=server)
            with httpx.Client(base_url=url, timeout=TIMEOUT_S) as warm:  # the server's model and caches
                for q in QUESTIONS * 2:
                    plain_request(warm, q)
            settle(server.pid)
            library: dict[int, Level] = {}
            plain: dict[int, Level] = {}
            for c, n in LEVELS:
                # In alternating rounds, so the load of the shared machine falls on both sides alike.
                for _ in range(ROUNDS):
                    lib = at_once(
                        c, n // ROUNDS, lambda k, i: (timed_ask(assistant, QUESTIONS[(k + i) % len(QUESTIONS)]), None)
                    )
                    library[c] = library[c].merge(lib) if c in library else lib
                    http = http_level(url, c, n // ROUNDS, stream=False)
                    plain[c] = plain[c].merge(http) if c in plain else http
            with httpx.Client(base_url=url, timeout=TIMEOUT_S) as probe:
                bare = at_once(1, LEVELS[0][1], lambda k, i: (timed_get(probe, "/healthz"), None))
            streamed = {c: http_level(url, c, n, stream=True) for c, n in LEVELS}
            gradio = {c: gradio_level(url, c, n) for c, n in GRADIO_LEVELS}
            answers, errors, samples = soak(url)
            metrics = httpx.get(f"{url}/metrics", timeout=30).text
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
    return report(library, plain, bare, streamed, gradio, (answers, errors, samples), metrics)


def cpu_ms(pid: int) -> float:
    """CPU milliseconds a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def settle(pid: int) -> None:
    """Wait until the server idles: /readyz waits for its warm-up, not for anything else it may still be busy with."""
    for _ in range(SETTLE_MAX_S):
        before = cpu_ms(pid)
        time.sleep(1)
        if cpu_ms(pid) - before < SETTLE_IDLE_MS:
            return


def timed_get(client: httpx.Client, path: str) -> float:
    """Milliseconds of one GET: the HTTP round trip alone, no answer."""
    started = time.perf_counter()
    client.get(path).raise_for_status()
    return (time.perf_counter() - started) * 1000


def timed_ask(assistant: object, question: str) -> float:
    """Milliseconds of one Assistant.ask, in this process."""
    started = time.perf_counter()
    assistant.ask(question)  # type: ignore[attr-defined]
    return (time.perf_counter() - started) * 1000


def gradio_level(url: str, clients: int, per_client: int) -> Level:
    """Gradio's /chat through gradio_client, one client (session) per thread."""
    from gradio_client import Client

    pool = [Client(f"{url}/", verbose=False) for _ in range(clients)]

    def chat(n: int, i: int) -> tuple[float, None]:
        started = time.perf_counter()
        pool[n].predict(message=QUESTIONS[(n + i) % len(QUESTIONS)], api_name="/chat")
        return (time.perf_counter() - started) * 1000, None

    return at_once(clients, per_client, chat)


def report(
    library: dict[int, Level],
    plain: dict[int, Level],
    bare: Level,
    streamed: dict[int, Level],
    gradio: dict[int, Level],
    soaked: tuple[int, int, list[str]],
    metrics: str,
) -> str:
    """The Markdown section."""
    answers, errors, samples = soaked
    overhead = plain[1].p(50) - library[1].p(50)
    ratio10 = plain[10].throughput / library[10].throughput
    requests = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("rag_http_requests_total{") and 'route="/v1/chat/completions"' in line
    )
    lines = [
        "## api",
        "",
        "`rag serve` (uvicorn, one process, extractive mode) over the seed corpus on 127.0.0.1, driven by httpx "
        "clients in threads of the benchmark process (one keep-alive connection each); `Assistant.ask` runs in the "
        f"benchmark process on an identical copy of the index, in the same run, taking turns with plain HTTP "
        f"({ROUNDS} alternating rounds per level). Load average at the end: "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine).",
        "",
        "| clients | `Assistant.ask` p50 / p95, answers/s | plain p50 / p95, answers/s | "
        "streaming p50 / p95, answers/s | first SSE byte p50 / p95 | Gradio `/chat` p50 / p95, answers/s |",
        "|---|---|---|---|---|---|",
    ]
    for clients, _ in LEVELS:
        lib, pl, st = library[clients], plain[clients], streamed[clients]
        gr = gradio.get(clients)
        first = percentile(list(st.first_bytes), 50), percentile(list(st.first_bytes), 95)
        gradio_cell = f"{gr.p(50):.0f} / {gr.p(95):.0f} ms, {gr.throughput:.1f}" if gr else "—"
        lines.append(
            f"| {clients} | {lib.p(50):.1f} / {lib.p(95):.1f} ms, {lib.throughput:.1f} "
            f"| {pl.p(50):.1f} / {pl.p(95):.1f} ms, {pl.throughput:.1f} "
            f"| {st.p(50):.1f} / {st.p(95):.1f} ms, {st.throughput:.1f} "
            f"| {first[0]:.1f} / {first[1]:.1f} ms | {gradio_cell} |"
        )
    verdict = {True: "met", False: "**not met**"}
    lines += [
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| HTTP overhead at p50 over in process (1 client) <= 5 ms | {overhead:.1f} ms | {verdict[overhead <= 5]} |",
        f"| throughput at 10 clients >= 0.8 × in-process `ask` at 10 threads | {ratio10:.2f}× "
        f"({plain[10].throughput:.1f} vs {library[10].throughput:.1f} answers/s) | {verdict[ratio10 >= 0.8]} |",
        f"| {SOAK_CLIENTS} streaming clients for {SOAK_S:.0f} s, zero errors | {answers} answers, {errors} errors "
        f"| {verdict[errors == 0 and answers > 0]} |",
        "",
        f"A bare round trip (GET /healthz, 1 client, keep-alive) took {bare.p(50):.1f} / {bare.p(95):.1f} ms "
        "p50 / p95. "
        f"The server's own /metrics counted {requests:.0f} chat completions. "
        f"Bounded loops: {', '.join(f'{c} clients × {n}' for c, n in LEVELS)} requests per mode; "
        f"Gradio {', '.join(f'{c} × {n}' for c, n in GRADIO_LEVELS)}.",
    ]
    if samples:
        lines.append(f"First errors: {json.dumps(samples)}")
    return "\n".join(lines)
