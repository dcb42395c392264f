"""Benchmark: the Gradio chat in Debian's chromium and through gradio_client, against the library in the same run."""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rag.assistant import Assistant
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from rag.types import TokenEvent

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
QUESTIONS = (
    "How many additional police officers did Kenya send to Haiti?",
    "How much has the U.S. pledged to fund the deployment?",
    "How many officers did Kenya send in June?",
)
PAGE_LOADS = 5
BROWSER_ASKS = 5
SINGLE_CHATS = 6
CONCURRENT_CHATS = 20

# Installed in the page before clicking Ask: browser-clock times of the first feedback, first token and final answer.
TIME_ANSWER_JS = """() => {
  const t = (window.__t = {});
  const chat = document.querySelector('#chatbot');
  const bot = () => chat.querySelectorAll('[data-testid=bot]');
  const before = bot().length;
  const observer = new MutationObserver(() => {
    const answers = bot();
    if (answers.length <= before) return;
    const last = answers[answers.length - 1];
    const text = last.innerText, now = performance.now();
    t.feedback ??= now;
    if (!t.token && text.trim() && !text.includes('Searching the documents')) t.token = now;
    if (t.token && !text.includes('▌') && last.querySelector('a[href^="#src-"]')) {
      t.done = now;
      observer.disconnect();
    }
  });
  observer.observe(chat, {subtree: true, childList: true, characterData: true});
  t.start = performance.now();
  document.querySelector('#ask').click();
}"""


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the OS says is free."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(fn: Callable[[], Any]) -> float:
    """Milliseconds one call takes."""
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def library_first_token_ms(assistant: Assistant, question: str) -> float:
    """Time to the first TokenEvent of Assistant.stream, in this process: the floor the UI adds to."""
    started = time.perf_counter()
    for event in assistant.stream(question, mode="extractive"):
        if isinstance(event, TokenEvent):
            elapsed = (time.perf_counter() - started) * 1000
            break
    else:
        raise RuntimeError(f"no token streamed for {question!r}")
    for _ in assistant.stream(question, mode="extractive"):  # let the generator finish its work elsewhere, too
        pass
    return elapsed


def browser_numbers(url: str, baseline: Callable[[str], float]) -> dict[str, list[float]]:
    """Page load to interactive, and feedback / first token / final answer times of asks in the page.

    baseline(question) runs just before each ask, so both see the same load on this shared machine.
    """
    from playwright.sync_api import sync_playwright

    numbers: dict[str, list[float]] = {"load": [], "feedback": [], "token": [], "done": [], "library": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            for _ in range(PAGE_LOADS):
                context = browser.new_context()  # a fresh cache each time: a first visit
                page = context.new_page()
                started = time.perf_counter()
                page.goto(url, wait_until="load")
                # Interactive: the question box is ready and the document count has arrived from the server.
                page.locator("#message textarea").wait_for()
                page.wait_for_function("() => /documents/.test(document.querySelector('#doc-count').innerText)")
                numbers["load"].append((time.perf_counter() - started) * 1000)
                context.close()
            page = browser.new_page()
            page.goto(url, wait_until="load")
            page.locator("#message textarea").wait_for()
            for i in range(BROWSER_ASKS + 1):
                question = QUESTIONS[i % len(QUESTIONS)]
                library = baseline(question)
                page.locator("#message textarea").fill(question)
                page.evaluate(TIME_ANSWER_JS)
                page.wait_for_function("() => window.__t.done", timeout=120_000)
                marks = page.evaluate("() => window.__t")
                if i == 0:
                    continue  # the first ask warms the server's caches
                for key in ("feedback", "token", "done"):
                    numbers[key].append(marks[key] - marks["start"])
                numbers["library"].append(library)
        finally:
            browser.close()
    return numbers


def api_numbers(url: str) -> tuple[list[float], list[float], float]:
    """Latencies of single gradio_client chats one at a time, then of CONCURRENT_CHATS at once, and that wall time."""
    from gradio_client import Client

    def chat(client: Client, question: str) -> float:
        return timed(lambda: client.predict(message=question, api_name="/chat"))

    warm = Client(url, verbose=False)
    chat(warm, QUESTIONS[0])
    single = [chat(Client(url, verbose=False), QUESTIONS[i % len(QUESTIONS)]) for i in range(SINGLE_CHATS)]
    clients = [Client(url, verbose=False) for _ in range(CONCURRENT_CHATS)]  # connecting is not part of a chat
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CONCURRENT_CHATS) as pool:
        concurrent = list(pool.map(lambda i: chat(clients[i], QUESTIONS[i % len(QUESTIONS)]), range(CONCURRENT_CHATS)))
    wall = (time.perf_counter() - started) * 1000
    return single, concurrent, wall


def run() -> str:
    """Serve the chat over the seed corpus in a temp home, drive it, and report the numbers as Markdown."""
    from ingest import ingest_paths
    from ui.app import serve

    embeddings = LocalEmbeddings()
    with tempfile.TemporaryDirectory(prefix="rag-bench-ui-") as tmp:
        assistant = Assistant(Settings(home=Path(tmp) / "rag", mode="extractive"), embeddings=embeddings)
        ingest_paths([REPO / "corpus"], settings=assistant.settings, store=assistant.store)
        library_first_token_ms(assistant, QUESTIONS[0])  # load the models and the BM25 index
        port = free_port()
        demo = serve(assistant, port=port, block=False)
        url = f"http://127.0.0.1:{port}/"
        try:
            page = browser_numbers(url, lambda question: library_first_token_ms(assistant, question))
            single, concurrent, wall = api_numbers(url)
        finally:
            demo.close()

    med = statistics.median
    lib_token = med(page["library"])
    single_p50, single_p95 = percentile(single, 50), percentile(single, 95)
    conc_p50, conc_p95 = percentile(concurrent, 50), percentile(concurrent, 95)
    load = os.getloadavg()[0]
    lines = [
        "## ui",
        "",
        f"The chat over the seed corpus, extractive mode, in Debian's chromium ({CHROMIUM}, headless) and through "
        "`gradio_client`, served in-process on 127.0.0.1. Medians unless stated; ratios are against a baseline "
        f"measured in the same run. Load average at the end: {load:.1f} on {os.cpu_count()} CPUs (shared machine).",
        "",
        "| measure | value | baseline (same run) | ratio |",
        "|---|---|---|---|",
        f"| page load to interactive (fresh context, {PAGE_LOADS} loads) | {med(page['load']):.0f} ms | — | — |",
        f"| click → first feedback in the chat ({BROWSER_ASKS} asks) | {med(page['feedback']):.0f} ms | — | — |",
        f"| click → first streamed answer token | {med(page['token']):.0f} ms | "
        f"`Assistant.stream` first token in-process: {lib_token:.0f} ms | {med(page['token']) / lib_token:.2f}× |",
        f"| click → final answer with linked citations | {med(page['done']):.0f} ms | — | — |",
        f"| `/chat` latency, one chat at a time ({SINGLE_CHATS}), p50 / p95 | {single_p50:.0f} / {single_p95:.0f} ms "
        "| — | 1.00× |",
        f"| `/chat` latency, {CONCURRENT_CHATS} concurrent sessions, p50 / p95 | {conc_p50:.0f} / {conc_p95:.0f} ms "
        f"| single p50 / p95: {single_p50:.0f} / {single_p95:.0f} ms | {conc_p50 / single_p50:.2f}× / "
        f"{conc_p95 / single_p95:.2f}× |",
        f"| {CONCURRENT_CHATS} concurrent chats, wall time | {wall:.0f} ms "
        f"| {CONCURRENT_CHATS} × single p50 = {CONCURRENT_CHATS * single_p50:.0f} ms "
        f"| {wall / (CONCURRENT_CHATS * single_p50):.2f}× |",
    ]
    return "\n".join(lines)
