"""NQ-open over its oracle passages: real search queries, with a seeded share of passages withheld.

Each line of the oracle file is one question with its gold ~100-word Wikipedia passage first in `ctxs`. The
passages are deduplicated by text and indexed as one document each. A seeded share of them is withheld from the
collection: their questions become unanswerable, unless another indexed passage still holds one of their gold
answers (then the question is neither answerable by its evidence nor honestly unanswerable, so it is dropped).
The questions are split into a seeded dev half and test half, independently of the withheld share, so a question
stays on its side of the split whatever --withhold is.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from evals.dataset import DatasetError, QAItem
from evals.metrics import AnswerHaystack

NQ_FORMAT = "nq-open"
SPLITS = ("dev", "test", "all")
DEFAULT_WITHHOLD = 0.2


@dataclass(frozen=True)
class Passage:
    """One distinct gold passage, indexed as its own document."""

    title: str
    text: str

    @property
    def file_name(self) -> str:
        """Named by its text, so the same passage keeps its file (and its chunks) across runs and seeds."""
        return hashlib.sha1(self.text.encode("utf-8")).hexdigest()[:16] + ".txt"


@dataclass(frozen=True)
class NQOpen:
    """The passages to index, the questions of one split, and how they were chosen."""

    passages: list[Passage]
    items: list[QAItem]
    details: dict[str, Any]


def nq_collection(withhold: float, seed: int) -> str:
    """The dedicated collection for one withheld share and seed, e.g. `nq-open-w20-s0`."""
    return f"nq-open-w{withhold * 100:g}-s{seed}"


def _fold(text: str) -> str:
    return " ".join(text.split())


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read NQ-open file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            gold = row["ctxs"][0]
            rows.append(
                {
                    "question": _fold(str(row["question"])),
                    "answers": tuple(dict.fromkeys(a for a in map(str, row["answers"]) if a.strip())),
                    "title": _fold(str(gold["title"])),
                    "text": _fold(str(gold["text"])),
                }
            )
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        except (KeyError, IndexError, TypeError) as exc:
            raise DatasetError(f"{path}:{number}: not in NQ-open oracle format (no {exc})") from exc
    if not rows:
        raise DatasetError(f"{path}: no questions in the NQ-open file")
    return rows


def load_nq_open(path: Path, *, split: str = "all", withhold: float = DEFAULT_WITHHOLD, seed: int = 0) -> NQOpen:
    """The indexed passages and one split's questions; the same arguments always give the same result."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split '{split}' (choose from: {', '.join(SPLITS)})")
    if not 0.0 <= withhold < 1.0:
        raise DatasetError(f"--withhold must be at least 0 and below 1, not {withhold}")
    rows = list({r["question"]: r for r in reversed(_read(path))}.values())[::-1]  # first occurrence wins
    passages = list({r["text"]: Passage(r["title"], r["text"]) for r in reversed(rows)}.values())[::-1]
    # String seeds: the split and the withheld share draw from separate streams, so one never shifts the other.
    withheld = set(
        random.Random(f"nq-open-withhold-{seed}").sample(range(len(passages)), round(withhold * len(passages)))
    )
    kept = [p for i, p in enumerate(passages) if i not in withheld]
    missing = {passages[i].text for i in withheld}
    order = list(range(len(rows)))
    random.Random(f"nq-open-split-{seed}").shuffle(order)
    half = (len(rows) + 1) // 2
    chosen = sorted(order[:half] if split == "dev" else order[half:] if split == "test" else order)
    haystack = AnswerHaystack(p.text for p in kept)
    items: list[QAItem] = []
    elsewhere = 0
    for i in chosen:
        row = rows[i]
        answerable = row["text"] not in missing
        if not answerable and haystack.contains(row["answers"]):
            elsewhere += 1
            continue
        try:
            items.append(
                QAItem(
                    id=f"nq-{i:04d}",
                    question=row["question"],
                    answers=row["answers"] if answerable else (),
                    answerable=answerable,
                    evidence=(row["text"],) if answerable else (),
                )
            )
        except ValidationError as exc:
            raise DatasetError(f"{path}: question {i + 1}: {exc.errors()[0]['msg']}") from exc
    if not items:
        raise DatasetError(f"{path}: no questions left in split '{split}'")
    details = {
        "format": NQ_FORMAT,
        "split": split,
        "withhold": withhold,
        "seed": seed,
        "passages": len(passages),
        "passages_indexed": len(kept),
        "passages_withheld": len(withheld),
        "questions": len(items),
        "unanswerable": sum(not q.answerable for q in items),
        "dropped_answer_elsewhere": elsewhere,
    }
    return NQOpen(kept, items, details)
