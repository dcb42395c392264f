"""Benchmark: requests/s of one app replica, then of two at once, against one `chroma run` server.

Each replica is its own process with its own home (its own BM25 snapshot), as behind a load balancer; both ask warm
questions in a loop over the same window. The point is that nothing serialises across replicas (no shared lock on
the read path), not to win on a machine with few cores: there, two replicas share the same CPUs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evals.bench.load import chroma_server
from evals.bench.scale import fill
from rag.settings import Settings

CHUNKS = 10_000
WINDOW_S = 30.0

# One replica: load and warm up, wait for the common start, then ask until the window closes.
REPLICA = """
import json, sys, time
from rag.assistant import Assistant
from rag.settings import Settings
start, end = float(sys.argv[1]), float(sys.argv[2])
assistant = Assistant(Settings())
assistant.warm_up()
assistant.ask("w1 w2 w3")
time.sleep(max(0.0, start - time.time()))
done, n = 0, 0
while time.time() < end:
    n += 1
    assistant.ask(f"w{n % 997} w{n * 7 % 991} w{n * 13 % 983}")
    done += 1
print(json.dumps({"asks": done}))
"""


def throughput(url: str, work: Path, replicas: int) -> float:
    """Asks per second of `replicas` processes over the same window."""
    start = time.time() + 90  # time for every replica to load its model and build its snapshot first
    end = start + WINDOW_S
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", REPLICA, str(start), str(end)],
            env=os.environ
            | {"RAG_HOME": str(work / f"replica-{replicas}-{n}"), "RAG_CHROMA_URL": url, "RAG_COLLECTION": "replicas"},
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(replicas)
    ]
    total = 0
    for run in runs:
        out, _ = run.communicate(timeout=600)
        if run.returncode != 0:
            raise RuntimeError(f"replica exited {run.returncode}")
        total += json.loads(out.strip().splitlines()[-1])["asks"]
    return total / WINDOW_S


def run() -> str:
    """The replicas section of BENCHMARKS.md."""
    with tempfile.TemporaryDirectory(prefix="rag-replicas-") as tmp:
        work = Path(tmp)
        with chroma_server(work / "chroma") as url:
            fill(Settings(home=work / "fill", chroma_url=url, collection="replicas"), CHUNKS)
            one = throughput(url, work, 1)
            two = throughput(url, work, 2)
    return "\n".join(
        [
            "## Replicas: requests/s of one and of two app processes against one Chroma server",
            "",
            f"A synthetic collection of {CHUNKS:,} chunks (as in `scale`) on one `chroma run`; each replica is a "
            f"process with its own home, asking warm extractive questions in a loop for {WINDOW_S:.0f} s "
            f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}: threads each replica's torch may use).",
            "",
            "| replicas | asks/s | vs one |",
            "|---|---|---|",
            f"| 1 | {one:.1f} | 1.00× |",
            f"| 2 | {two:.1f} | {two / one:.2f}× |",
            "",
            f"On {os.cpu_count()} CPUs shared with the Chroma server, two replicas compete for the same cores; a ratio "
            "near 1× or above means they do not wait on each other (a lock across replicas would show as less).",
        ]
    )
